package statefun

import (
	"log/slog"
	"net/http"
)

// ConnectHandlerForTest returns the HTTP port's native handlers of rt's
// entities, behind the server's interceptor chain, without a server.
func ConnectHandlerForTest(rt *Runtime, log *slog.Logger) http.Handler {
	return nativeHandlers(newConnectHandlers(rt.services, serverInterceptor(newMetrics(), log, &rt.panicLog), 4<<20))
}

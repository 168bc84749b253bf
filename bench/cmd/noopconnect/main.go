// Command noopconnect serves the shopping cart's API with connect-go
// handlers that return at once (noop.ConnectHandler): the floor of the
// benchmark's HTTP/JSON cells, as noopserver is of its gRPC cells. Like the
// statefun server's HTTP port it speaks HTTP/1.1 and HTTP/2 without TLS
// (h2c, with prior knowledge) on one port. It stops on SIGTERM or SIGINT.
//
//	noopconnect --listen 127.0.0.1:9000
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/statefun-go/statefun/bench/noop"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "HTTP address to listen on")
	flag.Parse()
	if err := run(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "noopconnect:", err)
		os.Exit(1)
	}
}

func run(listen string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetUnencryptedHTTP2(true)
	srv := &http.Server{Handler: noop.ConnectHandler(), Protocols: &protocols, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	fmt.Fprintln(os.Stderr, "serving Connect (HTTP/1.1 and h2c) on", lis.Addr())
	if err := srv.Serve(lis); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

package statefun_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	statefun "github.com/statefun-go/statefun/runtime"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// BenchmarkConnectJSON is the cost of a Connect JSON call in the HTTP
// port's handlers, without a network: writes (AddItem) and reads
// (GetCart) on the in-memory store.
func BenchmarkConnectJSON(b *testing.B) {
	rt, err := statefun.New([]*statefun.Entity{cart.NewShoppingCart(cartEntity{})})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = rt.Close(b.Context()) })
	h := statefun.ConnectHandlerForTest(rt, slog.New(slog.DiscardHandler))
	call := func(b *testing.B, method, body string) {
		req := httptest.NewRequest(http.MethodPost, cartPath+method, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Connect-Protocol-Version", "1")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code != http.StatusOK {
			b.Fatalf("%s: HTTP %d %s", method, w.Code, w.Body)
		}
		_, _ = io.Copy(io.Discard, w.Body)
	}
	b.Run("AddItem", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			call(b, "AddItem", fmt.Sprintf(`{"cartId":"cart-%d","sku":"apple","quantity":1}`, i%1000))
		}
	})
	b.Run("GetCart", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			call(b, "GetCart", fmt.Sprintf(`{"cartId":"cart-%d"}`, i%1000))
		}
	})
}

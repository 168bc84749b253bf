package reliability

import (
	"net/http"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/encoding/protojson"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/runtime/store/embedded"
)

// TestIdempotencyKeyOverHTTP sends one AddItem as Connect JSON with an
// Idempotency-Key header twice, once more over gRPC with the same key, and
// once more over HTTP after a SIGTERM and a restart: the cart must change
// once. The same AddItem sent twice without a key, next to it, changes the
// cart twice, so the test would see a header that the HTTP transcoder
// dropped on its way to the runtime.
func TestIdempotencyKeyOverHTTP(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	const (
		cart   = "http-key"
		key    = "9f4c2e1a-5b7d-4c3e-8a6f-0d2b1e3c4a5f"
		keyed  = `{"cart_id":"http-key","sku":"apple","quantity":3}`
		keyles = `{"cart_id":"http-key","sku":"pear","quantity":1}`
	)
	withKey := http.Header{"Idempotency-Key": {key}}
	add := func(srv *server, body string, header http.Header, what string) {
		t.Helper()
		if code, res := postJSONWith(t, srv, "AddItem", body, header); code != http.StatusOK || res != "{}" {
			t.Fatalf("%s: HTTP %d %s, want 200 {}", what, code, res)
		}
	}

	srv := startServer(t, serverConfig{flags: []string{"--data-dir", dir}})
	add(srv, keyed, withKey, "AddItem with an Idempotency-Key")
	add(srv, keyed, withKey, "the same AddItem again, same key")
	add(srv, keyles, nil, "AddItem without a key")
	add(srv, keyles, nil, "the same AddItem again, without a key")
	// The key is the runtime's, whichever port it came through.
	grpcCtx := metadata.AppendToOutgoingContext(t.Context(), statefun.IdempotencyKeyHeader, key)
	if _, err := srv.carts.AddItem(grpcCtx, &cartv1.AddItemRequest{CartId: cart, Sku: "apple", Quantity: 3}); err != nil {
		t.Fatalf("the same AddItem over gRPC with the key: %v", err)
	}
	if err := srv.term(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, srv.log)
	}

	srv = startServer(t, serverConfig{flags: []string{"--data-dir", dir}})
	add(srv, keyed, withKey, "the same AddItem after a restart, same key")
	code, body := postJSON(t, srv, "GetCart", `{"cart_id":"http-key"}`)
	var got cartv1.Cart
	if err := protojson.Unmarshal([]byte(body), &got); code != http.StatusOK || err != nil {
		t.Fatalf("GetCart over HTTP: %d %s (%v)", code, body, err)
	}
	quantities := map[string]int32{}
	for _, it := range got.GetItems() {
		quantities[it.GetSku()] = it.GetQuantity()
	}
	if err := srv.term(); err != nil {
		t.Fatalf("SIGTERM: %v\n%s", err, srv.log)
	}
	if quantities["apple"] != 3 {
		t.Errorf("after the keyed AddItem of 3 apples was sent 4 times (HTTP, HTTP, gRPC, HTTP after a restart), the cart holds %d apples, want 3: the Idempotency-Key header did not reach the runtime", quantities["apple"])
	}
	if quantities["pear"] != 2 {
		t.Errorf("after AddItem of 1 pear was sent twice without a key, the cart holds %d pears, want 2", quantities["pear"])
	}

	st, err := embedded.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	h := readHistory(t, st, []string{cart})
	if n := h.events(); n != 3 {
		t.Errorf("the cart's history holds %d events, want 3 (one keyed apple, two pears)", n)
	}
	checkConverged(t, map[string]*cartv1.Cart{cart: &got}, h)
	count("idempotency keys checked over HTTP", 1)
}

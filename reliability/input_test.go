package reliability

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/types/known/emptypb"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
)

// maxKey is the longest entity key the runtime accepts.
const maxKey = 2048

// hostileKeys are keys that reach the store as they are: SQL and shell
// metacharacters, escapes, the schema placeholder, a NUL byte, path
// traversal, and the longest key accepted, incompressible.
func hostileKeys(t *testing.T) []string {
	random := make([]byte, maxKey)
	if _, err := rand.Read(random); err != nil {
		t.Fatal(err)
	}
	return []string{
		`'; DROP TABLE events; --`,
		`" OR 1=1 --`,
		`$1`, `%s%d%%`, `{{schema}}`, `\x00\\'\"`,
		"nul\x00inside",
		"../../../etc/passwd",
		"  spaces\tand\nnewlines  ",
		"ünïcødé-🛒",
		"a/b%2Fc",
		base64.RawURLEncoding.EncodeToString(random)[:maxKey],
	}
}

// TestHostileInput sends the server what a hostile or broken client
// would, on both stores: keys made of metacharacters (stored and read back
// byte for byte), keys over the limit (refused with INVALID_ARGUMENT while
// everyone else's writes go on), invalid UTF-8 in a key sent as raw wire
// bytes, and requests over the size limit. The server must keep serving.
// It found that a 1 MiB key failed the whole group commit it landed in:
// 50 such calls made over half of the concurrent ordinary writes fail.
func TestHostileInput(t *testing.T) {
	t.Parallel()
	t.Run("postgres", func(t *testing.T) {
		t.Parallel()
		schema := newSchema(t, "input")
		flags := []string{"--database-url", databaseURL(), "--database-schema", schema}
		hostileInput(t, flags, func(t *testing.T, keys []string) history {
			return readHistory(t, openPostgres(t, schema), keys)
		})
	})
	t.Run("embedded", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		hostileInput(t, []string{"--data-dir", dir}, func(t *testing.T, keys []string) history {
			st, err := embedded.Open(dir)
			if err != nil {
				t.Fatal(err)
			}
			defer st.Close()
			return readHistory(t, st, keys)
		})
	})
}

func hostileInput(t *testing.T, flags []string, read func(*testing.T, []string) history) {
	srv := startServer(t, serverConfig{flags: append(flags, "--max-message-bytes", fmt.Sprint(2<<20))})
	ctx := t.Context()
	keys := hostileKeys(t)
	for i, key := range keys {
		sku := fmt.Sprintf("sku-%d", i)
		if _, err := srv.carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: key, Sku: sku, Quantity: 1}); err != nil {
			t.Errorf("AddItem to key %.60q: %v", key, err)
			continue
		}
		got, err := srv.carts.GetCart(ctx, &cartv1.GetCartRequest{CartId: key})
		if err != nil || len(got.GetItems()) != 1 || got.GetItems()[0].GetSku() != sku {
			t.Errorf("GetCart of key %.60q: %v, %v; want exactly its own item", key, got, err)
		}
	}
	count("hostile keys round-tripped", len(keys))

	// Keys over the limit, while ordinary clients write: the long keys
	// are refused one by one and nobody else notices.
	l := newLedger()
	loadCtx, stop := context.WithCancel(ctx)
	ld := &load{ledger: l, carts: cartNames("bystander", 8), prefix: "b", workers: 8, retryPause: time.Millisecond}
	done := make(chan struct{})
	go func() { ld.run(loadCtx, srv.carts); close(done) }()
	long := strings.Repeat("k", 1<<20)
	for i := range 30 {
		key := long[:maxKey+1]
		if i%2 == 0 {
			key = long + fmt.Sprint(i)
		}
		_, err := srv.carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: key, Sku: "s", Quantity: 1})
		if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "over the limit") {
			t.Fatalf("AddItem with a %d-byte key: %.300v, want INVALID_ARGUMENT naming the limit", len(key), err)
		}
		_, err = srv.carts.GetCart(ctx, &cartv1.GetCartRequest{CartId: key})
		if status.Code(err) != codes.InvalidArgument {
			t.Fatalf("GetCart with a %d-byte key: %.300v, want INVALID_ARGUMENT", len(key), err)
		}
	}
	stop()
	<-done
	if seen := l.codeCounts(); len(seen) != 1 || seen[codes.OK] == 0 {
		t.Errorf("ordinary writes next to the overlong keys: %v, want all OK", seen)
	}
	count("overlong keys refused", 60)

	// Invalid UTF-8 in the key, as raw wire bytes: proto3 strings must be
	// UTF-8, so the request does not decode. gRPC reports undecodable
	// requests as INTERNAL (its status-code table says so); what matters
	// here is an error for this call only, and nothing stored.
	var raw []byte
	raw = protowire.AppendTag(raw, 1, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte{'c', 0xff, 0xfe})
	raw = protowire.AppendTag(raw, 2, protowire.BytesType)
	raw = protowire.AppendBytes(raw, []byte("sku"))
	raw = protowire.AppendTag(raw, 3, protowire.VarintType)
	raw = protowire.AppendVarint(raw, 1)
	wire := &emptypb.Empty{}
	wire.ProtoReflect().SetUnknown(raw)
	err := srv.conn.Invoke(ctx, "/shop.cart.v1.ShoppingCartService/AddItem", wire, &emptypb.Empty{})
	if code := status.Code(err); code != codes.Internal && code != codes.InvalidArgument {
		t.Errorf("AddItem with an invalid UTF-8 key: %v, want a decoding error", err)
	}
	code, body := postJSON(t, srv, "AddItem", "{\"cart_id\":\"c\xff\xfe\",\"sku\":\"s\",\"quantity\":1}")
	if code != http.StatusBadRequest || !strings.Contains(body, "invalid_argument") {
		t.Errorf("AddItem over HTTP with an invalid UTF-8 key: %d %s, want 400 invalid_argument", code, body)
	}

	// Requests over --max-message-bytes.
	huge := strings.Repeat("x", 3<<20)
	_, err = srv.carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "big", Sku: huge, Quantity: 1})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized gRPC request: %.200v, want RESOURCE_EXHAUSTED", err)
	}
	// Connect's resource_exhausted, as on the gRPC port. It was a 503
	// unavailable, which invites clients to retry the same body forever.
	if code, body := postJSON(t, srv, "AddItem", `{"cart_id":"big","sku":"`+huge+`","quantity":1}`); code != http.StatusTooManyRequests || !strings.Contains(body, "resource_exhausted") {
		t.Errorf("oversized HTTP request: %d %.200s, want 429 resource_exhausted", code, body)
	}
	if _, err := srv.carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "after", Sku: "s", Quantity: 1}); err != nil {
		t.Errorf("the server must keep serving after hostile input: %v", err)
	}
	if err := srv.term(); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, srv.log)
	}
	srv.checkNoRaces(t)

	// Every key is stored byte for byte, as one event, and nothing else.
	h := read(t, append(keys, "big", "c\xff\xfe", "c"))
	for i, key := range keys {
		if es := h[key]; len(es) != 1 || es[0].Entity != (store.Ref{Type: cartType, ID: key}) {
			t.Errorf("key %d (%.60q): stored %d events, want 1", i, key, len(es))
		}
	}
	for _, key := range []string{"big", "c\xff\xfe", "c"} {
		if len(h[key]) != 0 {
			t.Errorf("refused request to %q stored %d events", key, len(h[key]))
		}
	}
}

// postJSON sends a Connect JSON request to the cart service.
func postJSON(t *testing.T, srv *server, method, body string) (int, string) {
	t.Helper()
	return postJSONWith(t, srv, method, body, nil)
}

// postJSONWith sends a Connect JSON request with extra headers.
func postJSONWith(t *testing.T, srv *server, method, body string, header http.Header) (int, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, "http://"+srv.httpAddr+"/shop.cart.v1.ShoppingCartService/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for k, vs := range header {
		req.Header[k] = vs
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	res, err := (&http.Client{Timeout: hangLimit}).Do(req)
	if err != nil {
		t.Fatalf("%s over HTTP: %v", method, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

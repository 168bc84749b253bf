package statefun_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/types/known/emptypb"

	statefun "github.com/statefun-go/statefun/runtime"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
	"github.com/statefun-go/statefun/testdata/nestedkey"
)

// serveHTTP runs the whole server in process (statefun.Run, in-memory
// store) and returns the base URL of its HTTP port.
func serveHTTP(t *testing.T) string {
	t.Helper()
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	startServer(t, nil, []string{"--listen", grpcAddr, "--http-listen", httpAddr, "--data-dir", ":memory:"},
		cart.NewShoppingCart(cartEntity{}), nestedkey.NewDevice(deviceEntity{}))
	return "http://" + httpAddr
}

// startServer runs "serve" with args, the environment env and components,
// returns once it serves HTTP, and at the end of the test stops it and
// fails unless it exited cleanly within 30 s.
func startServer(t *testing.T, env map[string]string, args []string, components ...statefun.Component) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &lockedBuffer{}
	exit := make(chan int, 1)
	go func() {
		exit <- statefun.Run(ctx, append([]string{"serve"}, args...), func(k string) string { return env[k] }, out, out, components...)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case code := <-exit:
			if code != 0 {
				t.Errorf("server exit code %d:\n%s", code, out)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("server did not stop:\n%s", out)
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(out.String(), "serving HTTP") {
		select {
		case code := <-exit:
			exit <- code
			t.Fatalf("server exited at start with %d:\n%s", code, out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server did not start:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// post sends body to base+path with the headers (a list of name, value
// pairs) and returns the status and the response body.
func post(t *testing.T, base, path, body string, headers ...string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// connectError is the body of a Connect error response.
type connectError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

const cartPath = "/statefun.testdata.eventsourced.ShoppingCart/"

// wantConnectError fails the test unless the response is a Connect error
// with the status, code and message.
func wantConnectError(t *testing.T, status int, body string, wantStatus int, wantCode, wantMessage string) {
	t.Helper()
	var got connectError
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("HTTP %d %q: not a Connect error: %v", status, body, err)
	}
	if status != wantStatus || got.Code != wantCode || got.Message != wantMessage {
		t.Errorf("got HTTP %d %s: %s\nwant HTTP %d %s: %s", status, got.Code, got.Message, wantStatus, wantCode, wantMessage)
	}
}

// A JSON POST without Connect-Protocol-Version is a Connect unary call, as
// connect-go takes it.
func TestHTTPWithoutConnectProtocolVersion(t *testing.T) {
	t.Parallel()
	base := serveHTTP(t)
	for _, contentType := range []string{"application/json", "application/json; charset=utf-8"} {
		code, body := post(t, base, cartPath+"AddItem", `{"cart_id":"c1","sku":"apple","quantity":2}`, "Content-Type", contentType)
		if code != http.StatusOK || strings.TrimSpace(body) != "{}" {
			t.Fatalf("AddItem (%s) without Connect-Protocol-Version: HTTP %d %s, want 200 {}", contentType, code, body)
		}
	}
	code, body := post(t, base, cartPath+"GetCart", `{"cart_id":"c1"}`, "Content-Type", "application/json")
	if code != http.StatusOK || !strings.Contains(body, `"quantity":4`) {
		t.Fatalf("GetCart without Connect-Protocol-Version: HTTP %d %s, want the 4 apples", code, body)
	}
	// Refused for what is wrong with it, not for the missing header.
	code, body = post(t, base, cartPath+"AddItem", `{"sku":"apple","quantity":2}`, "Content-Type", "application/json")
	wantConnectError(t, code, body, http.StatusBadRequest, "invalid_argument",
		"missing entity key: field cart_id of statefun.testdata.eventsourced.AddItemRequest is empty; set it to the key of the entity to address")
}

// An empty body is invalid_argument, as connect-go answers it, never a 500.
func TestHTTPEmptyBody(t *testing.T) {
	t.Parallel()
	base := serveHTTP(t)
	for _, headers := range [][]string{
		{"Content-Type", "application/json", "Connect-Protocol-Version", "1"},
		{"Content-Type", "application/json"},
	} {
		code, body := post(t, base, cartPath+"AddItem", "", headers...)
		wantConnectError(t, code, body, http.StatusBadRequest, "invalid_argument", "request body is empty; send a JSON object, e.g. {}")
	}
	code, body := post(t, base, cartPath+"AddItem", "", "Content-Type", "application/proto", "Connect-Protocol-Version", "1")
	wantConnectError(t, code, body, http.StatusBadRequest, "invalid_argument",
		"request body is empty; send the request message (every statefun method needs its entity key)")
	// An empty JSON object is a request, refused for its missing key.
	code, body = post(t, base, cartPath+"AddItem", "{}", "Content-Type", "application/json")
	wantConnectError(t, code, body, http.StatusBadRequest, "invalid_argument",
		"missing entity key: field cart_id of statefun.testdata.eventsourced.AddItemRequest is empty; set it to the key of the entity to address")
}

// A field the request message does not have is refused by name, at any
// depth, instead of being dropped.
func TestHTTPUnknownField(t *testing.T) {
	t.Parallel()
	base := serveHTTP(t)
	for _, tc := range []struct {
		path, body, want string
	}{
		{cartPath + "AddItem", `{"cart_id":"c1","sku":"apple","qty":2}`,
			`unknown field "qty" in statefun.testdata.eventsourced.AddItemRequest; the fields are: cart_id (cartId), sku, quantity`},
		{"/statefun.testdata.nestedkey.Device/Latest", `{"query":{"device":{"site":"s1","serial":"7","lable":"x"}}}`,
			`unknown field "lable" in statefun.testdata.nestedkey.DeviceRef; the fields are: site, serial, label`},
	} {
		code, body := post(t, base, tc.path, tc.body, "Content-Type", "application/json", "Connect-Protocol-Version", "1")
		wantConnectError(t, code, body, http.StatusBadRequest, "invalid_argument", tc.want)
	}
	// Both the proto name and the JSON name of a field are accepted.
	code, body := post(t, base, cartPath+"AddItem", `{"cartId":"c1","sku":"apple","quantity":2}`, "Content-Type", "application/json")
	if code != http.StatusOK {
		t.Fatalf("AddItem with cartId: HTTP %d %s", code, body)
	}
}

// An unknown method or service is the Connect error unimplemented, naming
// the services there are; a path that is no RPC gets a plain 404.
func TestHTTPUnknownMethod(t *testing.T) {
	t.Parallel()
	base := serveHTTP(t)
	const services = "the services are statefun.testdata.eventsourced.ShoppingCart (methods: AddItem, RemoveItem, Checkout, GetCart), " +
		"statefun.testdata.nestedkey.Device (methods: Record, Latest), " +
		"statefun.v1.AdminService (methods: ListEntityTypes, GetEntity, ListEvents, ListConsumers)"
	for _, path := range []string{cartPath + "AddItems", "/shop.cart.v1.NoSuchService/AddItem"} {
		for _, headers := range [][]string{
			{"Content-Type", "application/json", "Connect-Protocol-Version", "1"},
			{"Content-Type", "application/json"},
		} {
			code, body := post(t, base, path, "{}", headers...)
			wantConnectError(t, code, body, http.StatusNotFound, "unimplemented", "no method "+path+"; "+services)
		}
	}
	res, err := http.Get(base + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusNotFound || !strings.Contains(string(b), "this port serves POST /<package>.<Service>/<Method>") {
		t.Errorf("GET /: HTTP %d %q, want 404 with a hint", res.StatusCode, b)
	}
}

// h2cClient speaks HTTP/2 without TLS, as gRPC clients of the HTTP port do.
func h2cClient() *http.Client {
	var protocols http.Protocols
	protocols.SetUnencryptedHTTP2(true)
	return &http.Client{Transport: &http.Transport{Protocols: &protocols}, Timeout: 30 * time.Second}
}

// Every protocol of the HTTP port reaches the entity, and an entity's
// error keeps its code and message in each.
func TestHTTPProtocols(t *testing.T) {
	t.Parallel()
	base := serveHTTP(t)
	for _, tc := range []struct {
		name string
		opts []connect.ClientOption
	}{
		{"connect-proto", nil},
		{"connect-json", []connect.ClientOption{connect.WithProtoJSON()}},
		{"grpc", []connect.ClientOption{connect.WithGRPC()}},
		{"grpc-json", []connect.ClientOption{connect.WithGRPC(), connect.WithProtoJSON()}},
		{"grpc-web", []connect.ClientOption{connect.WithGRPCWeb()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			client := h2cClient()
			add := connect.NewClient[cart.AddItemRequest, emptypb.Empty](client, base+cartPath+"AddItem", tc.opts...)
			get := connect.NewClient[cart.GetCartRequest, cart.Cart](client, base+cartPath+"GetCart", tc.opts...)
			id := "cart-" + tc.name
			if _, err := add.CallUnary(t.Context(), connect.NewRequest(&cart.AddItemRequest{CartId: id, Sku: "apple", Quantity: 3})); err != nil {
				t.Fatalf("AddItem: %v", err)
			}
			res, err := get.CallUnary(t.Context(), connect.NewRequest(&cart.GetCartRequest{CartId: id}))
			if err != nil {
				t.Fatalf("GetCart: %v", err)
			}
			if items := res.Msg.GetItems(); len(items) != 1 || items[0].GetSku() != "apple" || items[0].GetQuantity() != 3 {
				t.Errorf("GetCart: %v, want 3 apples", res.Msg)
			}
			_, err = add.CallUnary(t.Context(), connect.NewRequest(&cart.AddItemRequest{CartId: id, Sku: "apple"}))
			if connect.CodeOf(err) != connect.CodeInvalidArgument || !strings.Contains(err.Error(), "quantity must be positive") {
				t.Errorf("AddItem of no apples: %v, want invalid_argument: quantity must be positive", err)
			}
			// An empty message, which gRPC frames as no bytes at all.
			if _, err := get.CallUnary(t.Context(), connect.NewRequest(&cart.GetCartRequest{})); connect.CodeOf(err) != connect.CodeInvalidArgument {
				t.Errorf("GetCart of no cart: %v, want invalid_argument", err)
			}
		})
	}
}

// A call over the HTTP port passes through the interceptors of the gRPC
// port: its metrics are recorded by method and code.
func TestHTTPCallsPassTheServerInterceptors(t *testing.T) {
	t.Parallel()
	base := serveHTTP(t)
	if code, body := post(t, base, cartPath+"AddItem", `{"cart_id":"m1","sku":"apple","quantity":1}`, "Content-Type", "application/json"); code != http.StatusOK {
		t.Fatalf("AddItem: HTTP %d %s", code, body)
	}
	if code, body := post(t, base, cartPath+"AddItem", `{"cart_id":"m1","sku":"apple"}`, "Content-Type", "application/json"); code != http.StatusBadRequest {
		t.Fatalf("AddItem of no apples: HTTP %d %s, want 400", code, body)
	}
	res, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(res.Body)
	res.Body.Close()
	for _, want := range []string{
		`statefun_request_duration_seconds_count{code="OK",method="/statefun.testdata.eventsourced.ShoppingCart/AddItem"} 1`,
		`statefun_request_duration_seconds_count{code="InvalidArgument",method="/statefun.testdata.eventsourced.ShoppingCart/AddItem"} 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// A reply under 1 KiB is sent uncompressed, even to a client that accepts
// gzip; a larger one is compressed.
func TestHTTPCompressesOnlyLargeReplies(t *testing.T) {
	t.Parallel()
	base := serveHTTP(t)
	getCart := func(id string) (encoding string, size int) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+cartPath+"GetCart", strings.NewReader(`{"cart_id":"`+id+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		// Set by hand, the transport leaves the body as it came.
		req.Header.Set("Accept-Encoding", "gzip")
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusOK {
			t.Fatalf("GetCart %s: HTTP %d %s", id, res.StatusCode, b)
		}
		return res.Header.Get("Content-Encoding"), len(b)
	}
	post(t, base, cartPath+"AddItem", `{"cart_id":"small","sku":"apple","quantity":1}`, "Content-Type", "application/json")
	for i := range 20 {
		sku := strings.Repeat(string(rune('a'+i)), 100)
		if code, body := post(t, base, cartPath+"AddItem", `{"cart_id":"large","sku":"`+sku+`","quantity":1}`, "Content-Type", "application/json"); code != http.StatusOK {
			t.Fatalf("AddItem: HTTP %d %s", code, body)
		}
	}
	if encoding, size := getCart("small"); encoding != "" {
		t.Errorf("a reply of %d bytes came with Content-Encoding %q, want none", size, encoding)
	}
	if encoding, size := getCart("large"); encoding != "gzip" {
		t.Errorf("a reply of %d bytes came with Content-Encoding %q, want gzip", size, encoding)
	}
}

// A request over --max-message-bytes (4 MiB by default) is
// resource_exhausted (HTTP 429), as on the gRPC port, whether or not it
// says its length.
func TestHTTPOversizedRequest(t *testing.T) {
	t.Parallel()
	base := serveHTTP(t)
	big := `{"cart_id":"c1","sku":"` + strings.Repeat("a", 5<<20) + `","quantity":1}`
	code, body := post(t, base, cartPath+"AddItem", big, "Content-Type", "application/json")
	var got connectError
	if err := json.Unmarshal([]byte(body), &got); err != nil || code != http.StatusTooManyRequests || got.Code != "resource_exhausted" {
		t.Errorf("oversized request: HTTP %d %.200s, want 429 resource_exhausted", code, body)
	}
	// Without a Content-Length (chunked), the limit holds while reading.
	req, err := http.NewRequest(http.MethodPost, base+cartPath+"AddItem", io.MultiReader(strings.NewReader(big)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if err := json.Unmarshal(b, &got); err != nil || res.StatusCode != http.StatusTooManyRequests || got.Code != "resource_exhausted" {
		t.Errorf("oversized chunked request: HTTP %d %.200s, want 429 resource_exhausted", res.StatusCode, b)
	}
}

package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/statefun-go/statefun/examples/internal/e2e"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// TestServerEndToEnd builds the real server binary, calls it over gRPC and
// HTTP/JSON, stops it with SIGTERM, starts it again and checks the state
// survived: on the embedded store and on Postgres.
func TestServerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := e2e.Build(t, ".")
	t.Run("embedded", func(t *testing.T) {
		dir := t.TempDir()
		checkRestart(t, bin, "--data-dir", dir)
	})
	t.Run("REST", func(t *testing.T) {
		checkREST(t, bin, "--data-dir", t.TempDir())
	})
	t.Run("idle carts expire", func(t *testing.T) {
		t.Setenv(idleTimeoutEnv, "2s")
		checkIdleExpiry(t, bin, "--data-dir", t.TempDir())
	})
	t.Run("bad input", func(t *testing.T) {
		checkBadInput(t, bin, "--data-dir", t.TempDir(), "--max-message-bytes", "1024")
	})
	t.Run("postgres", func(t *testing.T) {
		checkRestart(t, bin, e2e.PostgresFlags(t, "e2e")...)
	})
}

func checkRestart(t *testing.T, bin string, storeFlags ...string) {
	ctx := context.Background()
	srv := e2e.Start(t, bin, storeFlags...)
	carts := cartv1.NewShoppingCartServiceClient(srv.Conn)
	if _, err := carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c1", Sku: "apple", Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	body := postJSON(t, srv, "AddItem", `{"cart_id":"c1","sku":"pear","quantity":1}`)
	if strings.TrimSpace(body) != "{}" {
		t.Fatalf("AddItem over HTTP: %s", body)
	}
	_, err := carts.AddItem(ctx, &cartv1.AddItemRequest{Sku: "apple", Quantity: 1})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "field cart_id of shop.cart.v1.AddItemRequest is empty") {
		t.Fatalf("request without key: %v", err)
	}
	srv.Stop(t)

	srv = e2e.Start(t, bin, storeFlags...)
	defer srv.Stop(t)
	var got struct {
		Items []struct {
			Sku      string `json:"sku"`
			Quantity int    `json:"quantity"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(postJSON(t, srv, "GetCart", `{"cart_id":"c1"}`)), &got); err != nil {
		t.Fatal(err)
	}
	if len(got.Items) != 2 || got.Items[0].Sku != "apple" || got.Items[0].Quantity != 2 || got.Items[1].Sku != "pear" {
		t.Fatalf("cart after restart = %+v, want 2 apples and a pear", got)
	}
}

// checkIdleExpiry: with an idle timeout, a cart left alone is emptied by
// its timer, which survives a restart of the server; a checked-out cart is
// not.
func checkIdleExpiry(t *testing.T, bin string, flags ...string) {
	ctx := context.Background()
	srv := e2e.Start(t, bin, flags...)
	carts := cartv1.NewShoppingCartServiceClient(srv.Conn)
	for _, id := range []string{"idle", "bought"} {
		if _, err := carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: id, Sku: "apple", Quantity: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := carts.Checkout(ctx, &cartv1.CheckoutRequest{CartId: "bought"}); err != nil {
		t.Fatal(err)
	}
	srv.Stop(t)

	srv = e2e.Start(t, bin, flags...)
	defer srv.Stop(t)
	carts = cartv1.NewShoppingCartServiceClient(srv.Conn)
	deadline := time.Now().Add(20 * time.Second)
	for {
		cart, err := carts.GetCart(ctx, &cartv1.GetCartRequest{CartId: "idle"})
		if err != nil {
			t.Fatal(err)
		}
		if len(cart.GetItems()) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("idle cart still holds %v 20s after its 2s idle timeout\n%s", cart.GetItems(), srv.Log())
		}
		time.Sleep(100 * time.Millisecond)
	}
	bought, err := carts.GetCart(ctx, &cartv1.GetCartRequest{CartId: "bought"})
	if err != nil || len(bought.GetItems()) != 1 {
		t.Errorf("checked-out cart after the idle timeout: %v, %v; want its apple kept", bought, err)
	}
}

// checkBadInput: malformed JSON, an unknown method and an oversized
// request each get the protocol's standard error, and the server keeps
// serving.
func checkBadInput(t *testing.T, bin string, flags ...string) {
	ctx := context.Background()
	srv := e2e.Start(t, bin, flags...)
	defer srv.Stop(t)
	carts := cartv1.NewShoppingCartServiceClient(srv.Conn)

	status400 := func(method, body, wantCode string) {
		t.Helper()
		code, res := srv.Post(t, cartPath+method, body)
		if code < 400 || !strings.Contains(res, wantCode) {
			t.Errorf("%s with %q: HTTP %d %s, want an error with code %q", method, body, code, res, wantCode)
		}
	}
	status400("AddItem", `{"cart_id": "c1", "quantity": "lots"`, "invalid_argument")
	status400("AddItem", `{"cart_id": "c1", "sku": "apple", "quantity": 1, "no_such_field": 1}`, `unknown field \"no_such_field\" in shop.cart.v1.AddItemRequest`)
	// An unknown procedure is a 404, as in connect-go, with Connect's code.
	if code, res := srv.Post(t, cartPath+"Teleport", `{}`); code != http.StatusNotFound || !strings.Contains(res, `"code":"unimplemented"`) {
		t.Errorf("unknown method over HTTP: %d %s, want 404 unimplemented", code, res)
	}

	err := srv.Conn.Invoke(ctx, "/shop.cart.v1.ShoppingCartService/Teleport", &cartv1.GetCartRequest{CartId: "c1"}, &cartv1.Cart{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown gRPC method: %v, want Unimplemented", err)
	}
	_, err = carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c1", Sku: strings.Repeat("x", 4096), Quantity: 1})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized request: %v, want ResourceExhausted", err)
	}
	if code, res := srv.Post(t, cartPath+"AddItem", `{"cart_id":"c1","sku":"`+strings.Repeat("x", 4096)+`","quantity":1}`); code < 400 {
		t.Errorf("oversized HTTP request: %d %s, want an error", code, res)
	}
	if _, err := carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c1", Sku: "apple", Quantity: 1}); err != nil {
		t.Errorf("after bad input the server must keep serving: %v", err)
	}
}

// checkREST calls each REST route of cart.proto's google.api.http options:
// the cart ID in the path addresses the entity, the body fills the rest,
// and each refusal is its google.rpc HTTP status with the code and message
// in JSON.
func checkREST(t *testing.T, bin string, flags ...string) {
	srv := e2e.Start(t, bin, flags...)
	defer srv.Stop(t)
	call := func(method, path, body string, wantStatus int, want string) {
		t.Helper()
		code, res := srv.Call(t, method, path, body)
		if code != wantStatus || strings.Join(strings.Fields(res), "") != want {
			t.Errorf("%s %s %s: HTTP %d %s\nwant HTTP %d %s", method, path, body, code, res, wantStatus, want)
		}
	}
	call(http.MethodPost, "/v1/carts/r1/items", `{"sku":"apple","quantity":2}`, http.StatusOK, `{}`)
	call(http.MethodPost, "/v1/carts/r1/items", `{"sku":"pear","quantity":1}`, http.StatusOK, `{}`)
	call(http.MethodGet, "/v1/carts/r1", "", http.StatusOK, `{"items":[{"sku":"apple","quantity":2},{"sku":"pear","quantity":1}]}`)
	// The path's cart ID is the entity key, as the request's cart_id is over gRPC.
	cart, err := cartv1.NewShoppingCartServiceClient(srv.Conn).GetCart(context.Background(), &cartv1.GetCartRequest{CartId: "r1"})
	if err != nil || len(cart.GetItems()) != 2 {
		t.Errorf("GetCart r1 over gRPC after the REST calls: %v %v, want 2 items", cart, err)
	}
	call(http.MethodDelete, "/v1/carts/r1/items/pear", "", http.StatusOK, `{}`)
	call(http.MethodDelete, "/v1/carts/r1/items/kiwi", "", http.StatusNotFound, `{"code":5,"message":"sku\"kiwi\"isnotinthecart"}`)
	call(http.MethodPost, "/v1/carts/r1/items", `{"sku":"fig","quantity":0}`, http.StatusBadRequest, `{"code":3,"message":"quantitymustbepositive,got0"}`)
	call(http.MethodPost, "/v1/carts/r2:checkout", "", http.StatusBadRequest, `{"code":9,"message":"cannotcheckoutanemptycart"}`)
	call(http.MethodPost, "/v1/carts/r1:checkout", "", http.StatusOK, `{}`)
	call(http.MethodPost, "/v1/carts/r1/items", `{"sku":"fig","quantity":1}`, http.StatusBadRequest, `{"code":9,"message":"cartischeckedout;startanewcart"}`)
	code, res := srv.Call(t, http.MethodGet, "/v1/carts/r1", "")
	if code != http.StatusOK || !strings.Contains(res, `"checkedOutAt":`) || !strings.Contains(res, `"sku":"apple"`) {
		t.Errorf("GET /v1/carts/r1 after checkout: HTTP %d %s, want the apples and checkedOutAt", code, res)
	}

	// An empty key is refused by name; the query cannot replace the path's key.
	call(http.MethodGet, "/v1/carts/", "", http.StatusBadRequest,
		`{"code":3,"message":"missingentitykey:fieldcart_idofshop.cart.v1.GetCartRequestisempty;setittothekeyoftheentitytoaddress"}`)
	call(http.MethodGet, "/v1/carts/r1?cart_id=r2", "", http.StatusBadRequest,
		`{"code":3,"message":"queryparametercart_idsetsfieldcart_idofshop.cart.v1.GetCartRequest,whichthepathofGET/v1/carts/{cart_id}binds;leaveitoutofthequery"}`)
	call(http.MethodPost, "/v1/carts/r3/items", `{"sku":"fig","qty":1}`, http.StatusBadRequest,
		`{"code":3,"message":"unknownfield\"qty\"inshop.cart.v1.AddItemRequest;thefieldsare:cart_id(cartId),sku,quantity"}`)
	if code, _ := srv.Call(t, http.MethodPut, "/v1/carts/r1", ""); code != http.StatusMethodNotAllowed {
		t.Errorf("PUT /v1/carts/r1: HTTP %d, want 405", code)
	}
}

const cartPath = "/shop.cart.v1.ShoppingCartService/"

func postJSON(t *testing.T, srv *e2e.Server, method, body string) string {
	t.Helper()
	code, res := srv.Post(t, cartPath+method, body)
	if code != http.StatusOK {
		t.Fatalf("%s over HTTP: %d: %s", method, code, res)
	}
	return res
}

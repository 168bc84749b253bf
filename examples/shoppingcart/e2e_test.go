package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
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
	t.Run("bad input", func(t *testing.T) {
		checkBadInput(t, bin, "--data-dir", t.TempDir(), "--max-message-bytes", "1024")
	})
	t.Run("postgres", func(t *testing.T) {
		url := os.Getenv("STATEFUN_TEST_DATABASE_URL")
		if url == "" {
			url = "postgres://postgres@127.0.0.1:5432/statefun_test?sslmode=disable"
		}
		schema := fmt.Sprintf("e2e_%d", time.Now().UnixNano())
		t.Cleanup(func() {
			conn, err := pgx.Connect(context.Background(), url)
			if err != nil {
				return
			}
			defer conn.Close(context.Background())
			_, _ = conn.Exec(context.Background(), "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
		})
		checkRestart(t, bin, "--database-url", url, "--database-schema", schema)
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

const cartPath = "/shop.cart.v1.ShoppingCartService/"

func postJSON(t *testing.T, srv *e2e.Server, method, body string) string {
	t.Helper()
	code, res := srv.Post(t, cartPath+method, body)
	if code != http.StatusOK {
		t.Fatalf("%s over HTTP: %d: %s", method, code, res)
	}
	return res
}

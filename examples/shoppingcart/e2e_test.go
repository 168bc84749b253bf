package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// TestServerEndToEnd builds the real server binary, calls it over gRPC and
// HTTP/JSON, stops it with SIGTERM, starts it again and checks the state
// survived: on the embedded store and on Postgres.
func TestServerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the server binary")
	}
	bin := filepath.Join(t.TempDir(), "shoppingcart")
	build := exec.Command("go", "build", "-o", bin, ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
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
			url = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
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
	srv := startServer(t, bin, storeFlags...)
	carts := cartv1.NewShoppingCartServiceClient(srv.conn)
	if _, err := carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c1", Sku: "apple", Quantity: 2}); err != nil {
		t.Fatal(err)
	}
	body := srv.postJSON(t, "AddItem", `{"cart_id":"c1","sku":"pear","quantity":1}`)
	if strings.TrimSpace(body) != "{}" {
		t.Fatalf("AddItem over HTTP: %s", body)
	}
	_, err := carts.AddItem(ctx, &cartv1.AddItemRequest{Sku: "apple", Quantity: 1})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "field cart_id of shop.cart.v1.AddItemRequest is empty") {
		t.Fatalf("request without key: %v", err)
	}
	srv.stop(t)

	srv = startServer(t, bin, storeFlags...)
	defer srv.stop(t)
	var got struct {
		Items []struct {
			Sku      string `json:"sku"`
			Quantity int    `json:"quantity"`
		} `json:"items"`
	}
	if err := json.Unmarshal([]byte(srv.postJSON(t, "GetCart", `{"cart_id":"c1"}`)), &got); err != nil {
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
	srv := startServer(t, bin, flags...)
	defer srv.stop(t)
	carts := cartv1.NewShoppingCartServiceClient(srv.conn)

	status400 := func(method, body, wantCode string) {
		t.Helper()
		code, res := srv.post(t, method, body)
		if code < 400 || !strings.Contains(res, wantCode) {
			t.Errorf("%s with %q: HTTP %d %s, want an error with code %q", method, body, code, res, wantCode)
		}
	}
	status400("AddItem", `{"cart_id": "c1", "quantity": "lots"`, "invalid_argument")
	status400("AddItem", `{"cart_id": "c1", "no_such_field": 1}`, "invalid_argument")
	// An unknown procedure is a plain 404, as in connect-go.
	if code, res := srv.post(t, "Teleport", `{}`); code != http.StatusNotFound {
		t.Errorf("unknown method over HTTP: %d %s, want 404", code, res)
	}

	err := srv.conn.Invoke(ctx, "/shop.cart.v1.ShoppingCartService/Teleport", &cartv1.GetCartRequest{CartId: "c1"}, &cartv1.Cart{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("unknown gRPC method: %v, want Unimplemented", err)
	}
	_, err = carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c1", Sku: strings.Repeat("x", 4096), Quantity: 1})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("oversized request: %v, want ResourceExhausted", err)
	}
	if code, res := srv.post(t, "AddItem", `{"cart_id":"c1","sku":"`+strings.Repeat("x", 4096)+`","quantity":1}`); code < 400 {
		t.Errorf("oversized HTTP request: %d %s, want an error", code, res)
	}
	if _, err := carts.AddItem(ctx, &cartv1.AddItemRequest{CartId: "c1", Sku: "apple", Quantity: 1}); err != nil {
		t.Errorf("after bad input the server must keep serving: %v", err)
	}
}

type server struct {
	cmd      *exec.Cmd
	conn     *grpc.ClientConn
	httpAddr string
	exited   chan error
	log      *bytes.Buffer
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

func startServer(t *testing.T, bin string, flags ...string) *server {
	t.Helper()
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	cmd := exec.Command(bin, append([]string{"serve", "--listen", grpcAddr, "--http-listen", httpAddr}, flags...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, httpAddr: httpAddr, exited: make(chan error, 1), log: &bytes.Buffer{}}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		signalled := false
		for sc.Scan() {
			s.log.WriteString(sc.Text() + "\n")
			if !signalled && strings.Contains(sc.Text(), "serving HTTP") {
				close(ready)
				signalled = true
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		s.exited <- cmd.Wait()
	}()
	select {
	case <-ready:
	case err := <-s.exited:
		t.Fatalf("server exited at start: %v\n%s", err, s.log)
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("server did not start\n%s", s.log)
	}
	s.conn, err = grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *server) postJSON(t *testing.T, method, body string) string {
	t.Helper()
	code, res := s.post(t, method, body)
	if code != http.StatusOK {
		t.Fatalf("%s over HTTP: %d: %s", method, code, res)
	}
	return res
}

// post sends a Connect-protocol JSON request and returns the HTTP status
// and body.
func (s *server) post(t *testing.T, method, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.httpAddr+"/shop.cart.v1.ShoppingCartService/"+method, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Connect-Protocol-Version", "1")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// stop sends SIGTERM and expects a clean exit (code 0).
func (s *server) stop(t *testing.T) {
	t.Helper()
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.conn.Close()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.exited:
		if err != nil {
			t.Fatalf("server exit after SIGTERM: %v\n%s", err, s.log)
		}
		if !strings.Contains(s.log.String(), "stopped cleanly") {
			t.Errorf("no clean-stop log line:\n%s", s.log)
		}
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		t.Fatalf("server did not stop after SIGTERM\n%s", s.log)
	}
}

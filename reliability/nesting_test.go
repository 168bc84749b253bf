package reliability

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	statefun "github.com/statefun-go/statefun/runtime"
	"github.com/statefun-go/statefun/testdata/wellknown"
)

// runServer runs statefun.Run in this process (the whole server: gRPC,
// HTTP, the store, the shutdown path) with the given entities, for
// entities that no example binary hosts. It returns the two addresses and
// a stop function that returns Run's exit code.
func runServer(t *testing.T, entity *statefun.Entity, flags ...string) (grpcAddr, httpAddr string, stop func() int) {
	t.Helper()
	grpcAddr, httpAddr = freeAddr(t), freeAddr(t)
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncWriter{}
	args := append([]string{"serve", "--listen", grpcAddr, "--http-listen", httpAddr}, flags...)
	exit := make(chan int, 1)
	go func() { exit <- statefun.Run(ctx, args, func(string) string { return "" }, out, out, entity) }()
	deadline := time.Now().Add(hangLimit)
	for !strings.Contains(out.String(), "serving HTTP") {
		select {
		case code := <-exit:
			cancel()
			t.Fatalf("server exited at start with %d:\n%s", code, out)
		default:
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("server did not start:\n%s", out)
		}
		time.Sleep(10 * time.Millisecond)
	}
	var once sync.Once
	code := 0
	stop = func() int {
		once.Do(func() {
			cancel()
			select {
			case code = <-exit:
			case <-time.After(2 * hangLimit):
				t.Fatalf("server did not stop:\n%s", out)
			}
		})
		return code
	}
	t.Cleanup(func() { stop() })
	return grpcAddr, httpAddr, stop
}

type syncWriter struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

// nestedStruct returns a Struct with depth levels of Structs inside it.
func nestedStruct(depth int) *structpb.Struct {
	s := &structpb.Struct{Fields: map[string]*structpb.Value{"leaf": structpb.NewBoolValue(true)}}
	for range depth {
		s = &structpb.Struct{Fields: map[string]*structpb.Value{"n": structpb.NewStructValue(s)}}
	}
	return s
}

// TestDeeplyNestedStruct sends Profile, whose state is a
// google.protobuf.Struct, attributes nested thousands deep, over gRPC and
// HTTP/JSON. Too deep for protobuf's recursion limit (10,000 messages;
// each Struct level is three: Struct, map entry, Value) is refused for
// that call; just within it is stored, and reloads after a restart. No
// depth may crash the server or its stack.
func TestDeeplyNestedStruct(t *testing.T) {
	t.Parallel()
	if testing.Short() {
		t.Skip("runs a server")
	}
	dir := t.TempDir()
	profile := wellknown.NewProfile(profileHandler{})
	grpcAddr, httpAddr, stop := runServer(t, profile, "--data-dir", dir, "--max-message-bytes", fmt.Sprint(16<<20))
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20), grpc.MaxCallSendMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	profiles := wellknown.NewProfileClient(conn)
	ctx := t.Context()

	// 3,000 levels: 9,000 messages, inside the limit.
	deep := nestedStruct(3000)
	if _, err := profiles.Put(ctx, &wellknown.PutRequest{UserId: "deep", Attributes: deep}); err != nil {
		t.Fatalf("Put nested 3,000 deep: %v", err)
	}
	// 10,000 levels, and 100,000: over it.
	for _, depth := range []int{10_000, 100_000} {
		_, err := profiles.Put(ctx, &wellknown.PutRequest{UserId: fmt.Sprint("too-deep-", depth), Attributes: nestedStruct(depth)})
		if code := status.Code(err); code != codes.Internal && code != codes.InvalidArgument {
			t.Errorf("Put nested %d deep: %v, want the request refused as undecodable", depth, err)
		}
		count("deeply nested requests refused", 1)
	}
	// The same over HTTP/JSON, built as text: {"n":{"n":...{}...}}.
	for _, depth := range []int{3000, 10_000, 100_000} {
		attrs := strings.Repeat(`{"n":`, depth) + `{}` + strings.Repeat(`}`, depth)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+httpAddr+"/statefun.testdata.wellknown.Profile/Put",
			strings.NewReader(`{"user_id":"json-`+fmt.Sprint(depth)+`","attributes":`+attrs+`}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Connect-Protocol-Version", "1")
		res, err := (&http.Client{Timeout: hangLimit}).Do(req)
		if err != nil {
			t.Fatalf("Put over HTTP nested %d deep: %v", depth, err)
		}
		body, _ := io.ReadAll(res.Body)
		_ = res.Body.Close()
		switch {
		case depth <= 3000 && res.StatusCode != http.StatusOK:
			t.Errorf("Put over HTTP nested %d deep: %d %.200s, want 200", depth, res.StatusCode, body)
		case depth > 3000 && (res.StatusCode != http.StatusBadRequest || !bytes.Contains(body, []byte("invalid_argument"))):
			t.Errorf("Put over HTTP nested %d deep: %d %.200s, want 400 invalid_argument", depth, res.StatusCode, body)
		}
	}

	if code := stop(); code != 0 {
		t.Fatalf("server exit code %d after deep requests", code)
	}
	// Restart on the same data: the deep state reloads from the store.
	grpcAddr, _, _ = runServer(t, profile, "--data-dir", dir)
	conn2, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		t.Fatal(err)
	}
	defer conn2.Close()
	got, err := wellknown.NewProfileClient(conn2).Get(ctx, &wellknown.GetRequest{UserId: "deep"})
	if err != nil {
		t.Fatalf("Get after restart: %v", err)
	}
	if !proto.Equal(got, deep) {
		t.Error("the nested state read after a restart differs from the one stored")
	}
}

package statefun_test

import (
	"context"
	"io"
	"net/http"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// TestAdminListener: with --admin-listen, the public HTTP port serves no
// metrics or health, and the admin port serves them behind its token
// (health checks excepted).
func TestAdminListener(t *testing.T) {
	grpcAddr, httpAddr, adminAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	startServer(t, map[string]string{"STATEFUN_ADMIN_TOKEN": "let-ops-in"},
		[]string{"--listen", grpcAddr, "--http-listen", httpAddr, "--admin-listen", adminAddr, "--data-dir", ":memory:"},
		cart.NewShoppingCart(cartEntity{}))
	get := func(url, token string) int {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode >= 500 {
			t.Logf("GET %s: %d %s", url, res.StatusCode, b)
		}
		return res.StatusCode
	}
	for path, want := range map[string]int{"/metrics": http.StatusNotFound, "/healthz": http.StatusNotFound} {
		if got := get("http://"+httpAddr+path, ""); got == http.StatusOK || got != want && got < 400 {
			t.Errorf("public %s: %d, want it not served", path, got)
		}
	}
	if got := get("http://"+adminAddr+"/metrics", ""); got != http.StatusUnauthorized {
		t.Errorf("admin /metrics without the token: %d, want 401", got)
	}
	if got := get("http://"+adminAddr+"/metrics", "wrong"); got != http.StatusUnauthorized {
		t.Errorf("admin /metrics with a wrong token: %d, want 401", got)
	}
	if got := get("http://"+adminAddr+"/metrics", "let-ops-in"); got != http.StatusOK {
		t.Errorf("admin /metrics with the token: %d, want 200", got)
	}
	// The console and the admin API move there too, behind the token.
	if got := get("http://"+httpAddr+"/console/", ""); got == http.StatusOK {
		t.Errorf("public /console/: %d, want it not served", got)
	}
	if got := get("http://"+adminAddr+"/console/", ""); got != http.StatusUnauthorized {
		t.Errorf("admin /console/ without the token: %d, want 401", got)
	}
	if got := get("http://"+adminAddr+"/console/", "let-ops-in"); got != http.StatusOK {
		t.Errorf("admin /console/ with the token: %d, want 200", got)
	}
	if got := get("http://"+adminAddr+"/v1/admin/entity-types", "let-ops-in"); got != http.StatusOK {
		t.Errorf("admin API over REST with the token: %d, want 200", got)
	}
	if got := get("http://"+adminAddr+"/healthz", ""); got != http.StatusOK {
		t.Errorf("admin /healthz: %d, want 200 without a token", got)
	}
	// The public gRPC port has no reflection.
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = conn.Invoke(context.Background(), "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection on the public port: %v, want Unimplemented", err)
	}
}

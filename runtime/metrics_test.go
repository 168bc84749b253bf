package statefun_test

import (
	"context"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	statefun "github.com/statefun-go/statefun/runtime"
)

// TestRequestMetricsByMethodAndCode: the request histogram counts each
// call under its own method and status code, also when calls of several
// methods and codes run at once (under -race: the interceptor caches the
// histogram's children, filled on first use) and for a code outside
// gRPC's (not cached).
func TestRequestMetricsByMethodAndCode(t *testing.T) {
	t.Parallel()
	intercept, registry := statefun.RequestMetricsForTest()
	calls := []struct {
		method string
		code   codes.Code
		n      int
	}{
		{"/cart.v1.Cart/AddItem", codes.OK, 40},
		{"/cart.v1.Cart/AddItem", codes.NotFound, 30},
		{"/cart.v1.Cart/GetCart", codes.OK, 20},
		{"/cart.v1.Cart/GetCart", codes.Code(99), 10},
	}
	var wg sync.WaitGroup
	for _, c := range calls {
		for range c.n {
			wg.Go(func() {
				handler := func(context.Context, any) (any, error) {
					if c.code == codes.OK {
						return struct{}{}, nil
					}
					return nil, status.Error(c.code, "refused")
				}
				_, _ = intercept(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: c.method}, handler)
			})
		}
	}
	wg.Wait()
	families, err := registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[[2]string]uint64{}
	for _, f := range families {
		if f.GetName() != "statefun_request_duration_seconds" {
			continue
		}
		for _, m := range f.GetMetric() {
			var key [2]string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "method":
					key[0] = l.GetValue()
				case "code":
					key[1] = l.GetValue()
				}
			}
			got[key] = m.GetHistogram().GetSampleCount()
		}
	}
	if len(got) != len(calls) {
		t.Errorf("%d series %v, want %d", len(got), got, len(calls))
	}
	for _, c := range calls {
		if n := got[[2]string{c.method, c.code.String()}]; n != uint64(c.n) {
			t.Errorf("%s %s: %d calls counted, want %d", c.method, c.code, n, c.n)
		}
	}
}

package reliability

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// retryRun is the pair of retrying clients that runs alongside a fault,
// next to the test's own client (which does not retry): one sends every
// command with an idempotency key and retries it with the same key, the
// other retries the same way without a key. Each writes carts of its own,
// so that the three ledgers check apart. With keys, every command must end
// acknowledged and stored exactly once; without, the retries of commands
// that were stored but not acknowledged store them again, and the run
// reports how often.
type retryRun struct {
	name    string
	keyed   *load
	unkeyed *load
	stop    context.CancelFunc
	done    chan struct{}
}

// retryWorkers is each retrying client's concurrency; the test's own
// client has 16.
const retryWorkers = 8

func newRetryRun(name string) *retryRun {
	newLoad := func(mode retryMode, tag string) *load {
		return &load{
			ledger: newRetryLedger(mode), carts: cartNames(name+"-"+tag, 12), prefix: tag,
			workers: retryWorkers, retryPause: 20 * time.Millisecond,
		}
	}
	return &retryRun{name: name, keyed: newLoad(retryWithKeys, "keyed"), unkeyed: newLoad(retryWithoutKeys, "unkeyed")}
}

// carts returns every cart the two clients write.
func (r *retryRun) carts() []string {
	return slices.Concat(r.keyed.carts, r.unkeyed.carts)
}

// start sends commands through client until finish. Should the test end
// first (a failure), the clients abandon their commands.
func (r *retryRun) start(t testing.TB, client cartv1.ShoppingCartServiceClient) {
	ctx, stop := context.WithCancel(t.Context())
	r.stop, r.done = stop, make(chan struct{})
	r.keyed.abandon, r.unkeyed.abandon = t.Context(), t.Context()
	t.Cleanup(func() {
		stop()
		select {
		case <-r.done:
		case <-time.After(hangLimit):
			t.Errorf("%s: the retrying clients did not stop within %v of the test's end", r.name, hangLimit)
		}
	})
	go func() {
		var wg sync.WaitGroup
		wg.Go(func() { r.keyed.run(ctx, client) })
		wg.Go(func() { r.unkeyed.run(ctx, client) })
		wg.Wait()
		close(r.done)
	}()
}

// finish stops sending new commands and waits until every command sent
// was acknowledged or given up on: at most retryFor, plus one attempt.
func (r *retryRun) finish(t testing.TB) {
	t.Helper()
	r.stop()
	limit := retryFor + 2*hangLimit + 10*time.Second
	select {
	case <-r.done:
	case <-time.After(limit):
		t.Fatalf("%s: the retrying clients did not finish within %v of being stopped", r.name, limit)
	}
}

// check checks both ledgers against h (which may hold other carts too)
// and reports their figures. With keys it fails on a lost, a duplicated or
// a never acknowledged command; without keys on a lost or a never
// acknowledged one, and it reports the duplicates.
func (r *retryRun) check(t testing.TB, h history) {
	t.Helper()
	for _, ld := range []*load{r.keyed, r.unkeyed} {
		l := ld.ledger
		v := l.check(t, h.only(ld.carts))
		unknown, notStored := l.outcomeReports()
		if v.Sent == 0 || v.Acked == 0 {
			t.Errorf("%s, %v: no command was acknowledged: the load never ran", r.name, l.mode)
		}
		if l.maxLatency >= hangLimit {
			t.Errorf("%s, %v: an attempt took %v: calls must fail, not hang", r.name, l.mode, l.maxLatency)
		}
		if v.NeverAcked > 0 {
			t.Errorf("%s, %v: %d of %d commands were never acknowledged, though retried for up to %v each:\n  %s",
				r.name, l.mode, v.NeverAcked, v.Sent, retryFor, strings.Join(l.neverAcked(maxReportedCalls), "\n  "))
		}
		t.Logf("%s, %v: %d commands, %d retries (of %d commands), longest attempt %v, codes %v; %d unknown outcomes and %d not stored reported; %v",
			r.name, l.mode, v.Sent, v.Retries, v.Retried, l.maxLatency.Round(time.Millisecond), l.codeCounts(), unknown, notStored, v)
		note("retries/%s, %v: %d commands, %d retries (of %d commands), never acked %d, lost %d, duplicated %d; outcomes reported unknown %d, not stored %d; longest attempt %v",
			r.name, l.mode, v.Sent, v.Retries, v.Retried, v.NeverAcked, v.Lost, v.Duplicated, unknown, notStored, l.maxLatency.Round(time.Millisecond))
		mode := "keys"
		if l.mode == retryWithoutKeys {
			mode = "no keys"
		}
		count(fmt.Sprintf("retrying commands (%s)", mode), v.Sent)
		count(fmt.Sprintf("retries (%s)", mode), v.Retries)
		count(fmt.Sprintf("never acknowledged (%s)", mode), v.NeverAcked)
		count("commands acknowledged", v.Acked)
		count("lost", v.Lost)
		count("outcomes reported unknown", unknown)
		count("told not stored, yet stored", v.ToldNotStoredYetStored)
		if l.mode == retryWithKeys {
			count("duplicated", v.Duplicated)
		} else {
			count("duplicated by retries without keys", v.Duplicated)
		}
	}
}

// ledgers returns the two clients' ledgers.
func (r *retryRun) ledgers() []*ledger { return []*ledger{r.keyed.ledger, r.unkeyed.ledger} }

// only returns the part of h that holds carts.
func (h history) only(carts []string) history {
	part := history{}
	for _, cart := range carts {
		if es, ok := h[cart]; ok {
			part[cart] = es
		}
	}
	return part
}

// redirect is a client connection that sends each call to the server set
// last, so that a client's retries outlive the process they began on: the
// crash test points it at each restarted server in turn. Between a kill
// and the restart, calls fail on the dead server's connection.
type redirect struct {
	mu   sync.Mutex
	conn *grpc.ClientConn
}

func (r *redirect) set(conn *grpc.ClientConn) {
	r.mu.Lock()
	r.conn = conn
	r.mu.Unlock()
}

func (r *redirect) current() *grpc.ClientConn {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.conn
}

func (r *redirect) Invoke(ctx context.Context, method string, args, reply any, opts ...grpc.CallOption) error {
	return r.current().Invoke(ctx, method, args, reply, opts...)
}

func (r *redirect) NewStream(ctx context.Context, desc *grpc.StreamDesc, method string, opts ...grpc.CallOption) (grpc.ClientStream, error) {
	return r.current().NewStream(ctx, desc, method, opts...)
}

var _ grpc.ClientConnInterface = (*redirect)(nil)

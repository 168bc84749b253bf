package reliability

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	"github.com/statefun-go/statefun/runtime/store"
)

// recorder is a testing.TB that keeps the failures it is given, to test
// the checks themselves.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}

func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

// TestLedgerCheckCatches proves that ledger.check sees each broken
// guarantee, so that a passing crash test means something.
func TestLedgerCheckCatches(t *testing.T) {
	t.Parallel()
	event := func(cart string, seq int64, sku string) store.Event {
		payload, err := proto.Marshal(&cartv1.ItemAdded{Sku: sku, Quantity: quantityOf(sku)})
		if err != nil {
			t.Fatal(err)
		}
		return store.Event{Entity: store.Ref{Type: cartType, ID: cart}, Seq: seq, EventType: "ItemAdded", Payload: payload}
	}
	ledgerOf := func(cmds ...*command) *ledger {
		l := newLedger()
		for _, c := range cmds {
			c.quantity = quantityOf(c.sku)
			l.cmds[c.sku] = c
		}
		return l
	}
	acked := func(cart, sku string, sent, done time.Duration) *command {
		return &command{cart: cart, sku: sku, sent: sent, done: done, acked: true}
	}
	for _, tc := range []struct {
		name string
		l    *ledger
		h    history
		want string
	}{
		{"lost", ledgerOf(acked("c", "a", 1, 2), acked("c", "b", 3, 4)), history{"c": {event("c", 1, "a")}}, "is not in the store"},
		{"duplicated", ledgerOf(acked("c", "a", 1, 2)), history{"c": {event("c", 1, "a"), event("c", 2, "a")}}, "stored twice"},
		{"gap", ledgerOf(acked("c", "a", 1, 2), acked("c", "b", 3, 4)), history{"c": {event("c", 1, "a"), event("c", 3, "b")}}, "gap"},
		{"reordered", ledgerOf(acked("c", "a", 1, 2), acked("c", "b", 3, 4)), history{"c": {event("c", 1, "b"), event("c", 2, "a")}}, "yet is stored after it"},
		{"phantom", ledgerOf(), history{"c": {event("c", 1, "x")}}, "which no command sent"},
		{"misplaced", ledgerOf(acked("d", "a", 1, 2)), history{"c": {event("c", 1, "a")}}, "misplaced"},
		{"refused yet stored", ledgerOf(&command{cart: "c", sku: "a", sent: 1, done: 2, code: codes.Aborted}), history{"c": {event("c", 1, "a")}}, "promises it was not stored"},
		{"damaged", ledgerOf(acked("c", "a", 1, 2)), history{"c": {{Entity: store.Ref{Type: cartType, ID: "c"}, Seq: 1, EventType: "ItemAdded", Payload: []byte{0xff}}}}, "does not decode"},
	} {
		r := &recorder{TB: t}
		tc.l.check(r, tc.h)
		if !strings.Contains(strings.Join(r.errors, "\n"), tc.want) {
			t.Errorf("%s: check reported %q, want a failure saying %q", tc.name, r.errors, tc.want)
		}
	}

	// A client that retries without keys stores commands twice by
	// design: the copies are counted, not failed. A command refused after
	// an attempt that promised nothing may be stored; one refused on
	// every attempt may not.
	r := &recorder{TB: t}
	unkeyed := ledgerOf(acked("c", "a", 1, 2), &command{cart: "c", sku: "u", sent: 3, done: 7, attempts: 2, code: codes.Aborted, uncertain: true})
	unkeyed.mode = retryWithoutKeys
	unkeyed.cmds["a"].attempts = 3
	v := unkeyed.check(r, history{"c": {event("c", 1, "a"), event("c", 2, "a"), event("c", 3, "u")}})
	if len(r.errors) > 0 || v.Duplicated != 1 || v.Lost != 0 || v.NeverAcked != 1 || v.Retries != 3 || v.Retried != 2 {
		t.Errorf("retries without keys: %+v, %q; want 1 duplicate, 1 never acknowledged, 3 retries of 2 commands, no failure", v, r.errors)
	}
	r = &recorder{TB: t}
	told := ledgerOf(&command{cart: "c", sku: "n", sent: 1, done: 2, attempts: 1, code: codes.Unavailable, toldNotStored: true})
	if v := told.check(r, history{"c": {event("c", 1, "n")}}); len(r.errors) > 0 || v.ToldNotStoredYetStored != 1 {
		t.Errorf("told not stored, yet stored: %+v, %q; want it counted", v, r.errors)
	}
	r = &recorder{TB: t}
	keyed := ledgerOf(acked("c", "a", 1, 2))
	keyed.mode = retryWithKeys
	keyed.check(r, history{"c": {event("c", 1, "a"), event("c", 2, "a")}})
	if !strings.Contains(strings.Join(r.errors, "\n"), "stored twice") {
		t.Errorf("retries with keys: check reported %q, want the duplicate failed", r.errors)
	}

	// And a consistent history passes, concurrent commands in either order.
	r = &recorder{TB: t}
	v = ledgerOf(acked("c", "a", 1, 5), acked("c", "b", 2, 6), &command{cart: "c", sku: "u", sent: 3, done: 7, code: codes.Unavailable}).
		check(r, history{"c": {event("c", 1, "b"), event("c", 2, "u"), event("c", 3, "a")}})
	if len(r.errors) > 0 || v.Lost != 0 || v.UnackedPresent != 1 || v.Found != 2 {
		t.Errorf("consistent history: %v, %q", v, r.errors)
	}
}

// TestOutcomeReports proves that the ledger tells an unknown outcome, as
// the runtime reports it, from a change certainly not stored, and that it
// fails a report whose parts disagree.
func TestOutcomeReports(t *testing.T) {
	t.Parallel()
	withInfo := func(code codes.Code, msg, domain string) error {
		st, err := status.New(code, msg).WithDetails(&errdetails.ErrorInfo{Reason: unknownReason, Domain: domain})
		if err != nil {
			t.Fatal(err)
		}
		return st.Err()
	}
	unknownMsg := unknownPrefix + " (connection lost); retry with the same idempotency key"
	for _, tc := range []struct {
		name               string
		err                error
		unknown, notStored bool
		problem            string
	}{
		{"unknown", withInfo(codes.Unavailable, unknownMsg, unknownDomain), true, false, ""},
		{"not stored", status.Error(codes.Unavailable, notStoredPrefix+": connection refused; the entity was reset, retry the call"), false, true, ""},
		{"cut connection", status.Error(codes.Unavailable, "error reading from server: EOF"), false, false, ""},
		{"message without ErrorInfo", status.Error(codes.Unavailable, unknownMsg), false, false, "disagree"},
		{"ErrorInfo without message", withInfo(codes.Unavailable, "try again", unknownDomain), true, false, "disagree"},
		{"wrong code", withInfo(codes.Aborted, unknownMsg, unknownDomain), true, false, "want UNAVAILABLE"},
		{"wrong domain", withInfo(codes.Unavailable, unknownMsg, "grpc"), true, false, "domain"},
	} {
		unknown, notStored, problem := classify(tc.err)
		if unknown != tc.unknown || notStored != tc.notStored || (tc.problem == "") != (problem == "") || !strings.Contains(problem, tc.problem) {
			t.Errorf("%s: classify = %v, %v, %q; want %v, %v, a problem saying %q", tc.name, unknown, notStored, problem, tc.unknown, tc.notStored, tc.problem)
		}
	}
	// A misreport fails the ledger's check.
	l := newLedger()
	l.record(&command{cart: "c", sku: "a"}, 0, status.Error(codes.Unavailable, unknownMsg))
	r := &recorder{TB: t}
	l.check(r, history{})
	if !strings.Contains(strings.Join(r.errors, "\n"), "misreports its outcome") {
		t.Errorf("check reported %q, want the misreported outcome failed", r.errors)
	}
}

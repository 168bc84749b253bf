package storetest

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// outcomeTests are the tests of idempotency keys' outcomes.
//
// Expiry is judged by the store's clock, which for Postgres is the
// database server's: the tests keep an hour between "expired" and "live"
// so that clocks a little apart cannot decide a test.
var outcomeTests = []struct {
	name string
	fn   func(*testing.T, store.Store)
}{
	{"OutcomesRoundTrip", testOutcomesRoundTrip},
	{"OutcomeCommitsWithEvents", testOutcomeCommitsWithEvents},
	{"EventConflictStoresNoOutcome", testEventConflictStoresNoOutcome},
	{"OutcomeConflictStoresNoEvents", testOutcomeConflictStoresNoEvents},
	{"UnexpiredOutcomeKeyConflicts", testUnexpiredOutcomeKeyConflicts},
	{"OutcomeKeyTwiceInOneBatchConflicts", testOutcomeKeyTwiceInOneBatchConflicts},
	{"ExpiredOutcomeIsReplaced", testExpiredOutcomeIsReplaced},
	{"LoadOutcomeIgnoresExpired", testLoadOutcomeIgnoresExpired},
	{"ExpireOutcomes", testExpireOutcomes},
	{"ExpireOutcomesRejectsBadLimit", testExpireOutcomesRejectsBadLimit},
	{"OutcomesOnlyBatch", testOutcomesOnlyBatch},
	{"AwkwardOutcomeKeys", testAwkwardOutcomeKeys},
	{"OutcomeKeysArePerEntity", testOutcomeKeysArePerEntity},
	{"ConcurrentOutcomeWritersOneWins", testConcurrentOutcomeWritersOneWins},
	{"OutcomesOnClosedStore", testOutcomesOnClosedStore},
}

// closesItself lists the tests that close the store they are given.
var closesItself = map[string]bool{"ClosedStore": true, "OutcomesOnClosedStore": true}

// hour is the margin between an expired outcome and a live one.
const hour = time.Hour

// now is the time the tests count from, to the microsecond that stores
// keep.
func now() time.Time { return time.Now().Truncate(time.Microsecond) }

func okOutcome(ref store.Ref, key, reply string, expires time.Time) store.Outcome {
	return store.Outcome{Entity: ref, Key: key, Reply: []byte(reply), Expires: expires}
}

func errOutcome(ref store.Ref, key string, code uint32, message string, expires time.Time) store.Outcome {
	return store.Outcome{Entity: ref, Key: key, Code: code, Message: message, Expires: expires}
}

// loadOutcome returns the stored outcome of key on ref, failing the test
// on an error.
func loadOutcome(t *testing.T, s store.Store, ref store.Ref, key string) (store.Outcome, bool) {
	t.Helper()
	o, found, err := s.LoadOutcome(ctx, ref, key)
	if err != nil {
		t.Fatalf("LoadOutcome(%v, %q): %v", ref, key, err)
	}
	return o, found
}

// wantOutcome checks that the outcome stored for want's entity and key is
// want.
func wantOutcome(t *testing.T, s store.Store, want store.Outcome) {
	t.Helper()
	got, found := loadOutcome(t, s, want.Entity, want.Key)
	if !found {
		t.Errorf("no outcome for %v key %.40q, want %s", want.Entity, want.Key, describe(want))
		return
	}
	if got.Entity != want.Entity || got.Key != want.Key || got.Code != want.Code || got.Message != want.Message ||
		!bytes.Equal(got.Reply, want.Reply) || !got.Expires.Equal(want.Expires) {
		t.Errorf("outcome for %v key %.40q:\n got %s\nwant %s", want.Entity, want.Key, describe(got), describe(want))
	}
}

func describe(o store.Outcome) string {
	return fmt.Sprintf("{%v key %.40q code %d message %.40q reply %.40q expires %s}", o.Entity, o.Key, o.Code, o.Message, o.Reply, o.Expires.UTC().Format(time.RFC3339Nano))
}

func wantNoOutcome(t *testing.T, s store.Store, ref store.Ref, key string) {
	t.Helper()
	if got, found := loadOutcome(t, s, ref, key); found {
		t.Errorf("outcome for %v key %.40q = %s, want none", ref, key, describe(got))
	}
}

func expire(t *testing.T, s store.Store, before time.Time, limit int) int {
	t.Helper()
	n, err := s.ExpireOutcomes(ctx, before, limit)
	if err != nil {
		t.Fatalf("ExpireOutcomes(limit %d): %v", limit, err)
	}
	return n
}

func testOutcomesRoundTrip(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	wantNoOutcome(t, s, ref, "never used")
	exp := now().Add(hour)
	ok := okOutcome(ref, "ok", "\x00\x01reply\xff", exp)
	failed := errOutcome(ref, "failed", 9, "cart is checked out", exp.Add(time.Second))
	empty := okOutcome(ref, "empty reply", "", exp)
	empty.Reply = nil
	reply := bytes.Clone(ok.Reply)
	commit(t, s, &store.Batch{Outcomes: []store.Outcome{ok, failed, empty}})
	// The store keeps its own copy of the reply.
	ok.Reply[0] = 'X'
	ok.Reply = reply
	wantOutcome(t, s, ok)
	wantOutcome(t, s, failed)
	wantOutcome(t, s, empty)
	wantNoOutcome(t, s, ref, "never used")
	wantNoOutcome(t, s, ref, "Ok")
}

func testOutcomeCommitsWithEvents(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	kv := store.Ref{Type: "customer", ID: "ada"}
	exp := now().Add(hour)
	commit(t, s, &store.Batch{
		Events:   []store.Event{ev(ref, 1, "ItemAdded", "a")},
		Values:   []store.Value{{Entity: kv, Version: 1, Payload: []byte("london")}},
		Outcomes: []store.Outcome{okOutcome(ref, "add-1", "added", exp), okOutcome(kv, "move-1", "moved", exp)},
	})
	equalEvents(t, readAll(t, s, ref, 0), []store.Event{ev(ref, 1, "ItemAdded", "a")})
	wantOutcome(t, s, okOutcome(ref, "add-1", "added", exp))
	wantOutcome(t, s, okOutcome(kv, "move-1", "moved", exp))
}

// testEventConflictStoresNoOutcome: a batch refused for its events keeps
// none of its outcomes, of the fenced entity or of any other.
func testEventConflictStoresNoOutcome(t *testing.T, s store.Store) {
	fenced := store.Ref{Type: "cart", ID: "fenced"}
	other := store.Ref{Type: "cart", ID: "other"}
	exp := now().Add(hour)
	commit(t, s, &store.Batch{Events: []store.Event{ev(fenced, 1, "E", "first")}})
	err := s.Commit(ctx, &store.Batch{
		Events:   []store.Event{ev(fenced, 1, "E", "stale"), ev(other, 1, "E", "x")},
		Outcomes: []store.Outcome{okOutcome(fenced, "k1", "stale answer", exp), errOutcome(other, "k2", 5, "not found", exp)},
	})
	wantConflict(t, err, fenced)
	wantNoOutcome(t, s, fenced, "k1")
	wantNoOutcome(t, s, other, "k2")
	// The keys are free: the writer that reloads can answer them.
	commit(t, s, &store.Batch{
		Events:   []store.Event{ev(fenced, 2, "E", "fresh"), ev(other, 1, "E", "x")},
		Outcomes: []store.Outcome{okOutcome(fenced, "k1", "fresh answer", exp), errOutcome(other, "k2", 5, "not found", exp)},
	})
	wantOutcome(t, s, okOutcome(fenced, "k1", "fresh answer", exp))
}

// testOutcomeConflictStoresNoEvents: an answered key fences the batch
// that answers it again: nothing of the batch is written, and the
// conflict names the entity of the key, and only it.
func testOutcomeConflictStoresNoEvents(t *testing.T, s store.Store) {
	answered := store.Ref{Type: "cart", ID: "answered"}
	bystander := store.Ref{Type: "cart", ID: "bystander"}
	kv := store.Ref{Type: "customer", ID: "ada"}
	exp := now().Add(hour)
	commit(t, s, &store.Batch{
		Events:   []store.Event{ev(answered, 1, "E", "first")},
		Outcomes: []store.Outcome{okOutcome(answered, "k", "first answer", exp)},
	})
	err := s.Commit(ctx, &store.Batch{
		Events:   []store.Event{ev(answered, 2, "E", "second"), ev(bystander, 1, "E", "b")},
		Values:   []store.Value{{Entity: kv, Version: 1, Payload: []byte("v")}},
		Outcomes: []store.Outcome{okOutcome(answered, "k", "second answer", exp.Add(hour)), okOutcome(bystander, "k", "b", exp)},
	})
	wantConflict(t, err, answered)
	equalEvents(t, readAll(t, s, answered, 0), []store.Event{ev(answered, 1, "E", "first")})
	equalEvents(t, readAll(t, s, bystander, 0), nil)
	if _, found, err := s.LoadValue(ctx, kv); err != nil || found {
		t.Errorf("value of a refused batch: found=%v err=%v", found, err)
	}
	wantNoOutcome(t, s, bystander, "k")
	wantOutcome(t, s, okOutcome(answered, "k", "first answer", exp))

	// An outcome alone, with no event of its entity, fences the same way.
	err = s.Commit(ctx, &store.Batch{
		Events:   []store.Event{ev(bystander, 1, "E", "b")},
		Outcomes: []store.Outcome{errOutcome(answered, "k", 10, "aborted", exp)},
	})
	wantConflict(t, err, answered)
	equalEvents(t, readAll(t, s, bystander, 0), nil)
}

func testUnexpiredOutcomeKeyConflicts(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	first := okOutcome(ref, "k", "first", now().Add(hour))
	commit(t, s, &store.Batch{Outcomes: []store.Outcome{first}})
	for _, again := range []store.Outcome{
		okOutcome(ref, "k", "second", now().Add(2*hour)),
		errOutcome(ref, "k", 14, "unavailable", now().Add(hour)),
		first,
	} {
		err := s.Commit(ctx, &store.Batch{Outcomes: []store.Outcome{again}})
		wantConflict(t, err, ref)
	}
	wantOutcome(t, s, first)
}

func testOutcomeKeyTwiceInOneBatchConflicts(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	exp := now().Add(hour)
	err := s.Commit(ctx, &store.Batch{Outcomes: []store.Outcome{
		okOutcome(ref, "k", "one", exp),
		okOutcome(ref, "other", "fine", exp),
		okOutcome(ref, "k", "two", exp),
	}})
	wantConflict(t, err, ref)
	wantNoOutcome(t, s, ref, "k")
	wantNoOutcome(t, s, ref, "other")
}

func testExpiredOutcomeIsReplaced(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	commit(t, s, &store.Batch{Outcomes: []store.Outcome{errOutcome(ref, "k", 4, "deadline exceeded", now().Add(-hour))}})
	fresh := okOutcome(ref, "k", "fresh", now().Add(hour))
	commit(t, s, &store.Batch{Events: []store.Event{ev(ref, 1, "E", "e")}, Outcomes: []store.Outcome{fresh}})
	wantOutcome(t, s, fresh)
	// The replacement expires when it says, not when the outcome it
	// replaced did.
	if n := expire(t, s, now(), 100); n != 0 {
		t.Errorf("ExpireOutcomes after the replacement deleted %d outcomes, want 0", n)
	}
	wantOutcome(t, s, fresh)
	// Only a live key fences: the replacement now does.
	err := s.Commit(ctx, &store.Batch{Outcomes: []store.Outcome{okOutcome(ref, "k", "third", now().Add(hour))}})
	wantConflict(t, err, ref)
}

func testLoadOutcomeIgnoresExpired(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	live := okOutcome(ref, "live", "yes", now().Add(hour))
	commit(t, s, &store.Batch{Outcomes: []store.Outcome{
		okOutcome(ref, "expired", "too late", now().Add(-hour)),
		okOutcome(ref, "long expired", "far too late", time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)),
		live,
	}})
	wantNoOutcome(t, s, ref, "expired")
	wantNoOutcome(t, s, ref, "long expired")
	wantOutcome(t, s, live)
}

func testExpireOutcomes(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	base := now()
	before := base.Add(-hour)
	var b store.Batch
	for i := range 3 { // expired before `before`
		b.Outcomes = append(b.Outcomes, okOutcome(ref, fmt.Sprint("old", i), "", before.Add(-time.Duration(i+1)*time.Minute)))
	}
	for i := range 2 { // expired, but after `before`
		b.Outcomes = append(b.Outcomes, okOutcome(ref, fmt.Sprint("recent", i), "", before.Add(time.Duration(i+1)*time.Minute)))
	}
	for i := range 2 { // live
		b.Outcomes = append(b.Outcomes, okOutcome(ref, fmt.Sprint("live", i), "", base.Add(hour)))
	}
	b.Outcomes = append(b.Outcomes, okOutcome(ref, "at before", "", before)) // not before `before`
	commit(t, s, &b)

	if n := expire(t, s, before, 2); n != 2 {
		t.Errorf("first chunk deleted %d, want 2 (the limit)", n)
	}
	if n := expire(t, s, before, 2); n != 1 {
		t.Errorf("second chunk deleted %d, want the 1 left", n)
	}
	if n := expire(t, s, before, 2); n != 0 {
		t.Errorf("third chunk deleted %d, want 0", n)
	}
	// What expired after `before` is still there, and so are the live.
	if n := expire(t, s, base, 100); n != 3 {
		t.Errorf("ExpireOutcomes(now) deleted %d, want 3 (expired after the first cutoff)", n)
	}
	for i := range 2 {
		wantOutcome(t, s, b.Outcomes[5+i])
	}
	// A deleted key can be answered again.
	commit(t, s, &store.Batch{Outcomes: []store.Outcome{okOutcome(ref, "old0", "again", base.Add(hour))}})
	wantOutcome(t, s, okOutcome(ref, "old0", "again", base.Add(hour)))
	if n := expire(t, s, base.Add(2*hour), 100); n != 3 {
		t.Errorf("ExpireOutcomes(in two hours) deleted %d, want 3", n)
	}
	wantNoOutcome(t, s, ref, "live0")
	if n := expire(t, s, base.Add(2*hour), 100); n != 0 {
		t.Errorf("ExpireOutcomes of an empty store deleted %d", n)
	}
}

func testExpireOutcomesRejectsBadLimit(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "c1"}
	commit(t, s, &store.Batch{Outcomes: []store.Outcome{okOutcome(ref, "k", "", now().Add(-hour))}})
	for _, limit := range []int{0, -1} {
		if n, err := s.ExpireOutcomes(ctx, now(), limit); err == nil || n != 0 {
			t.Errorf("ExpireOutcomes(limit %d) = %d, %v; want an error", limit, n, err)
		}
	}
	if n := expire(t, s, now(), 1); n != 1 {
		t.Errorf("ExpireOutcomes(limit 1) deleted %d, want 1", n)
	}
}

func testOutcomesOnlyBatch(t *testing.T, s store.Store) {
	cart := store.Ref{Type: "cart", ID: "c1"}
	kv := store.Ref{Type: "customer", ID: "ada"}
	exp := now().Add(hour)
	b := &store.Batch{Outcomes: []store.Outcome{errOutcome(cart, "k1", 3, "quantity must be positive", exp), okOutcome(kv, "k2", "unchanged", exp)}}
	if b.Len() != 2 {
		t.Errorf("Len of a batch of 2 outcomes = %d", b.Len())
	}
	commit(t, s, b)
	wantOutcome(t, s, b.Outcomes[0])
	wantOutcome(t, s, b.Outcomes[1])
	equalEvents(t, readAll(t, s, cart, 0), nil)
	if _, found, err := s.LoadValue(ctx, kv); err != nil || found {
		t.Errorf("value after an outcomes-only batch: found=%v err=%v", found, err)
	}
	// The entities' histories are untouched: they start at 1.
	commit(t, s, &store.Batch{Events: []store.Event{ev(cart, 1, "E", "")}, Values: []store.Value{{Entity: kv, Version: 1}}})
}

func testAwkwardOutcomeKeys(t *testing.T, s store.Store) {
	// Entity IDs as long as the runtime allows, and not compressible.
	longID := make([]byte, 2048)
	for i := range longID {
		longID[i] = byte('!' + (i*7919+i/13)%90)
	}
	refs := []store.Ref{
		{Type: "cart", ID: "c1"},
		{Type: "cart", ID: string(longID)},
		{Type: "cart", ID: "with\x00nul"},
	}
	keys := []string{
		"ünïcödé ✓ 🔑",
		strings.Repeat("k", 256),
		strings.Repeat("é", 128), // 256 bytes
		strings.Repeat("🔑", 64),  // 256 bytes
		"with\x00nul",
		"'; DROP TABLE outcomes; --",
		"a/b%2Fc",
		"",
		" ",
	}
	exp := now().Add(hour)
	var b store.Batch
	for _, ref := range refs {
		for i, key := range keys {
			o := errOutcome(ref, key, uint32(i+1), "bad: "+key, exp)
			if i%2 == 0 {
				o = okOutcome(ref, key, "\x00"+key+"\xff", exp)
			}
			b.Outcomes = append(b.Outcomes, o)
		}
	}
	commit(t, s, &b)
	for _, o := range b.Outcomes {
		wantOutcome(t, s, o)
	}
	// The largest code a uint32 holds, and a message of any bytes.
	odd := store.Outcome{Entity: refs[0], Key: "odd", Code: 1<<32 - 1, Message: "\x00\xff not UTF-8", Reply: []byte{0}, Expires: exp}
	commit(t, s, &store.Batch{Outcomes: []store.Outcome{odd}})
	wantOutcome(t, s, odd)
	// Keys that are prefixes of each other are different keys.
	wantNoOutcome(t, s, refs[0], strings.Repeat("k", 255))
	wantNoOutcome(t, s, refs[0], "with")
	commit(t, s, &store.Batch{Outcomes: []store.Outcome{okOutcome(refs[0], "with", "prefix", exp), okOutcome(refs[0], strings.Repeat("k", 255), "shorter", exp)}})
	wantOutcome(t, s, okOutcome(refs[0], "with", "prefix", exp))
}

// testOutcomeKeysArePerEntity: a key names an outcome only together with
// its entity, however the type, ID and key bytes are split.
func testOutcomeKeysArePerEntity(t *testing.T, s store.Store) {
	exp := now().Add(hour)
	outcomes := []store.Outcome{
		okOutcome(store.Ref{Type: "cart", ID: "a"}, "k", "cart a", exp),
		okOutcome(store.Ref{Type: "cart", ID: "b"}, "k", "cart b", exp),
		okOutcome(store.Ref{Type: "order", ID: "a"}, "k", "order a", exp),
	}
	commit(t, s, &store.Batch{Outcomes: outcomes[:1]})
	commit(t, s, &store.Batch{Outcomes: outcomes[1:]})
	// Splits of the same bytes between type, ID and key.
	splits := []store.Outcome{
		okOutcome(store.Ref{Type: "ab", ID: "cd"}, "ef", "1", exp),
		okOutcome(store.Ref{Type: "a", ID: "bcd"}, "ef", "2", exp),
		okOutcome(store.Ref{Type: "ab", ID: "c"}, "def", "3", exp),
		okOutcome(store.Ref{Type: "ab", ID: "cde"}, "f", "4", exp),
		okOutcome(store.Ref{Type: "ab", ID: "cdef"}, "", "5", exp),
		okOutcome(store.Ref{Type: "ab", ID: ""}, "cdef", "6", exp),
	}
	commit(t, s, &store.Batch{Outcomes: splits})
	for _, o := range append(outcomes, splits...) {
		wantOutcome(t, s, o)
	}
	wantNoOutcome(t, s, store.Ref{Type: "cart", ID: "c"}, "k")
}

// testConcurrentOutcomeWritersOneWins races writers that all answer the
// same key: exactly one answer may be stored each round.
func testConcurrentOutcomeWritersOneWins(t *testing.T, s store.Store) {
	ref := store.Ref{Type: "cart", ID: "contended"}
	const writers, rounds = 8, 10
	exp := now().Add(hour)
	for round := range rounds {
		key := fmt.Sprint("request-", round)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var winners []string
		conflicts := 0
		var other []error
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				reply := fmt.Sprint("writer ", w)
				err := s.Commit(ctx, &store.Batch{Outcomes: []store.Outcome{okOutcome(ref, key, reply, exp)}})
				mu.Lock()
				defer mu.Unlock()
				var conflict *store.ConflictError
				switch {
				case err == nil:
					winners = append(winners, reply)
				case errors.As(err, &conflict):
					conflicts++
				default:
					other = append(other, err)
				}
			}()
		}
		wg.Wait()
		if len(winners) != 1 || conflicts != writers-1 || len(other) > 0 {
			t.Fatalf("round %d: winners %q, %d conflicts, errors %v; want 1 winner", round, winners, conflicts, other)
		}
		wantOutcome(t, s, okOutcome(ref, key, winners[0], exp))
	}
}

func testOutcomesOnClosedStore(t *testing.T, s store.Store) {
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	ref := store.Ref{Type: "cart", ID: "c1"}
	if err := s.Commit(ctx, &store.Batch{Outcomes: []store.Outcome{okOutcome(ref, "k", "", now().Add(hour))}}); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Commit of an outcome after Close: %v, want store.ErrClosed", err)
	}
	if _, _, err := s.LoadOutcome(ctx, ref, "k"); !errors.Is(err, store.ErrClosed) {
		t.Errorf("LoadOutcome after Close: %v, want store.ErrClosed", err)
	}
	if _, err := s.ExpireOutcomes(ctx, now(), 10); !errors.Is(err, store.ErrClosed) {
		t.Errorf("ExpireOutcomes after Close: %v, want store.ErrClosed", err)
	}
}

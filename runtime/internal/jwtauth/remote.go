package jwtauth

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
)

// maxJWKSResponse bounds a JWKS response: a key set is a few KiB, and a
// misbehaving or hostile endpoint must not make the server buffer more.
const maxJWKSResponse = 1 << 20

// refetchWait bounds how long Verify waits for a key fetch it asked for (or
// found under way), on top of the caller's ctx: long enough for a healthy
// identity provider to answer, short enough that an outage costs a caller
// one second, not the HTTP client's timeout.
const refetchWait = time.Second

// firstRetry is where the retry backoff of a failing JWKS fetch starts; it
// doubles up to the refresh interval.
const firstRetry = time.Second

// remoteState is what the last fetches of the JWKS URL left. It is replaced
// whole, never changed, so Verify reads it without a lock.
type remoteState struct {
	keys      []verifyKey
	kids      map[string]struct{}
	fetchedAt time.Time // of the last successful fetch (Config.Now); zero: none yet
	lastErr   error     // of the last fetch, nil when it succeeded
	// generation counts successful fetches: a Verify that asked for a
	// refetch tries the keys again only when they are new.
	generation uint64
}

// why the keys are not usable, for ErrKeysUnavailable's text.
func (s *remoteState) why() string {
	if s.lastErr != nil {
		return "last fetch: " + s.lastErr.Error()
	}
	return "the keys are older than the max staleness"
}

func (s *remoteState) hasKid(kid string) bool {
	_, ok := s.kids[kid]
	return ok
}

// remoteKeys keeps the keys of a JWKS URL fresh from a goroutine of its
// own, so that Verify never waits on the network except for a bounded wait
// on a fetch it asked for.
type remoteKeys struct {
	url        string
	client     *http.Client
	now        func() time.Time
	log        *slog.Logger
	refresh    time.Duration
	minRefetch time.Duration
	maxStale   time.Duration

	state atomic.Pointer[remoteState]

	mu        sync.Mutex
	lastFetch time.Time     // start of the last fetch of any kind (Config.Now)
	inflight  chan struct{} // closed when the fetch under way, or asked for, ends; nil when none
	stopped   bool
	wake      chan struct{} // capacity 1: a fetch asked for out of turn

	cancel context.CancelFunc
	done   chan struct{}
}

// checkJWKSURL refuses URLs that would fetch keys over an unauthenticated
// channel: whoever can answer for the URL can mint tokens the server takes.
func checkJWKSURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("the JWKS URL is malformed: %w", err)
	}
	if u.Host == "" {
		return errors.New("the JWKS URL has no host; give an absolute https:// URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("the JWKS URL uses http, which lets anyone on the path substitute signing keys; use https (http is allowed only for loopback hosts)")
	}
	return fmt.Errorf("the JWKS URL's scheme %q is not https; give an https:// URL", u.Scheme)
}

// checkRedirect holds a redirect of the JWKS URL to the same rule as the
// URL itself: a redirect to plain http would undo it.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= 5 {
		return errors.New("the JWKS URL redirects more than 5 times")
	}
	if err := checkJWKSURL(req.URL.String()); err != nil {
		return fmt.Errorf("the JWKS URL redirects to a URL it may not: %w", err)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func startRemote(ctx context.Context, r *remoteKeys) {
	r.state.Store(&remoteState{lastErr: errors.New("the first fetch has not finished")})
	r.wake = make(chan struct{}, 1)
	r.done = make(chan struct{})
	// The first fetch counts as under way from now, so a Verify that comes
	// before the goroutine runs waits for it (boundedly) like any other.
	r.inflight = make(chan struct{})
	ctx, r.cancel = context.WithCancel(ctx)
	go r.run(ctx)
}

// current is the key state and whether its keys may be used: a set fetched
// within MaxStale. Past that the keys are not trusted any longer, however
// they were obtained: a server cut off from its identity provider fails
// closed rather than honouring revoked keys forever.
func (r *remoteKeys) current(now time.Time) (*remoteState, bool) {
	s := r.state.Load()
	return s, !s.fetchedAt.IsZero() && now.Sub(s.fetchedAt) <= r.maxStale
}

// refetch asks for a fetch out of turn, at most once per MinRefetchInterval
// since the last fetch of any kind, and waits for the fetch under way (the
// one asked for, or one already running) to end, or for ctx, or for
// refetchWait. Only the waiting happens on the caller's goroutine; the
// network I/O is the loop's.
func (r *remoteKeys) refetch(ctx context.Context) {
	now := r.now()
	r.mu.Lock()
	if r.stopped {
		r.mu.Unlock()
		return
	}
	if r.inflight == nil {
		if now.Sub(r.lastFetch) < r.minRefetch {
			r.mu.Unlock()
			return
		}
		r.inflight = make(chan struct{})
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
	ended := r.inflight
	r.mu.Unlock()

	t := time.NewTimer(refetchWait)
	defer t.Stop()
	select {
	case <-ended:
	case <-ctx.Done():
	case <-t.C:
	}
}

func (r *remoteKeys) run(ctx context.Context) {
	defer close(r.done)
	retry := firstRetry
	for {
		r.mu.Lock()
		if r.inflight == nil {
			r.inflight = make(chan struct{})
		}
		ended := r.inflight
		r.lastFetch = r.now()
		r.mu.Unlock()

		err := r.fetch(ctx)

		r.mu.Lock()
		r.inflight = nil
		r.mu.Unlock()
		close(ended)

		wait := r.refresh
		if err != nil {
			if ctx.Err() != nil {
				r.stop()
				return
			}
			r.log.Warn("jwtauth: fetching the JWKS failed; keeping the keys fetched before, if any, until they are older than the max staleness",
				"url", r.url, "error", err, "retry_in", retry)
			wait = retry
			retry = min(2*retry, r.refresh)
		} else {
			retry = firstRetry
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			r.stop()
			return
		case <-t.C:
		case <-r.wake:
			t.Stop()
		}
	}
}

func (r *remoteKeys) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.stopped = true
	if r.inflight != nil {
		close(r.inflight)
		r.inflight = nil
	}
}

// fetch gets the key set once and stores the outcome: on success the new
// keys; on failure the error, next to the keys already held.
func (r *remoteKeys) fetch(ctx context.Context) error {
	keys, err := r.get(ctx)
	prev := r.state.Load()
	if err != nil {
		failed := *prev
		failed.lastErr = err
		r.state.Store(&failed)
		return err
	}
	kids := make(map[string]struct{}, len(keys))
	for _, k := range keys {
		if k.kid != "" {
			kids[k.kid] = struct{}{}
		}
	}
	r.state.Store(&remoteState{keys: keys, kids: kids, fetchedAt: r.now(), generation: prev.generation + 1})
	return nil
}

func (r *remoteKeys) get(ctx context.Context) ([]verifyKey, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, http.NoBody)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the JWKS: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("the JWKS URL answered %s", resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSResponse+1))
	if err != nil {
		return nil, fmt.Errorf("reading the JWKS response: %w", err)
	}
	if len(body) > maxJWKSResponse {
		return nil, errors.New("the JWKS response is larger than 1 MiB; point the JWKS URL at the identity provider's key set")
	}
	keys, skipped, err := parseJWKS(body)
	if err != nil {
		return nil, err
	}
	if len(skipped) > 0 {
		r.log.Info("jwtauth: some keys of the JWKS are not used", "url", r.url, "skipped", skipped)
	}
	return keys, nil
}

package statefun

import (
	"net"
	"net/netip"
	"regexp"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/statefun-go/statefun/runtime/internal/jwtauth"
)

// serviceNamePattern is what a service's name may look like: the same
// shape as an entity type, so that it is safe in logs and tokens.
var serviceNamePattern = regexp.MustCompile(`^[a-z][a-z0-9._-]{0,127}$`)

// rateLimits keeps a token bucket per key (a caller, a connection). Keys
// unused for idleAfter are dropped, so that a stream of one-off callers
// does not grow it without bound.
type rateLimits struct {
	rate  float64
	burst int

	mu        sync.Mutex
	limiters  map[string]*keyLimiter
	lastSweep time.Time
}

type keyLimiter struct {
	limiter  *rate.Limiter
	lastUsed time.Time
}

const rateLimitIdleAfter = time.Minute

func newRateLimits(perSecond float64, burst int) *rateLimits {
	if burst < 1 {
		// A burst below one would refuse every call; a second's worth is
		// what a client that keeps to the rate may send at once.
		burst = max(1, int(perSecond))
	}
	return &rateLimits{rate: perSecond, burst: burst, limiters: map[string]*keyLimiter{}}
}

// allow reports whether key may make a call now, and counts it.
func (l *rateLimits) allow(key string, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) > rateLimitIdleAfter {
		for k, kl := range l.limiters {
			if now.Sub(kl.lastUsed) > rateLimitIdleAfter {
				delete(l.limiters, k)
			}
		}
		l.lastSweep = now
	}
	kl, ok := l.limiters[key]
	if !ok {
		kl = &keyLimiter{limiter: rate.NewLimiter(rate.Limit(l.rate), l.burst)}
		l.limiters[key] = kl
	}
	kl.lastUsed = now
	return kl.limiter.AllowN(now, 1)
}

// clientNetwork names an anonymous caller for its rate limit: its IPv4
// address, whatever its port, or its IPv6 /64, since one client commonly
// holds a whole /64 and could otherwise take a new limit per address.
func clientNetwork(addr string) string {
	host := addr
	if h, _, err := net.SplitHostPort(addr); err == nil {
		host = h
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || ip.Is4() || ip.Is4In6() {
		return host
	}
	prefix, err := ip.Prefix(64)
	if err != nil {
		return host
	}
	return prefix.String()
}

// tokenCache remembers the tokens a verifier accepted, so that a client
// sending the same token with every call (as clients do, until it
// expires) pays for its signature once. An entry is good until the
// token's exp, and for at most tokenCacheTTL: a key the issuer withdrew
// stops admitting the tokens it signed within that time. Only accepted
// tokens are kept, by their exact text, so a cached entry is exactly what
// validating the same text again would return.
type tokenCache struct {
	mu      sync.Mutex
	entries map[string]cachedToken
}

type cachedToken struct {
	claims *jwtauth.Claims
	until  time.Time
}

const (
	tokenCacheTTL  = time.Minute
	tokenCacheSize = 10_000
)

func (c *tokenCache) get(raw string, now time.Time) (*jwtauth.Claims, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[raw]
	if !ok {
		return nil, false
	}
	if expired := !now.Before(e.until); expired {
		delete(c.entries, raw)
		return nil, false
	}
	return e.claims, true
}

func (c *tokenCache) put(raw string, claims *jwtauth.Claims, now time.Time) {
	until := now.Add(tokenCacheTTL)
	if !claims.Expiry.IsZero() && claims.Expiry.Before(until) {
		until = claims.Expiry
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]cachedToken{}
	}
	if len(c.entries) >= tokenCacheSize {
		// Full: drop the expired entries, or, if none has, all of them
		// (a flood of distinct valid tokens pays for their signatures).
		for k, e := range c.entries {
			if !now.Before(e.until) {
				delete(c.entries, k)
			}
		}
		if len(c.entries) >= tokenCacheSize {
			clear(c.entries)
		}
	}
	c.entries[raw] = cachedToken{claims: claims, until: until}
}

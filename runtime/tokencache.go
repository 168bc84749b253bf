package statefun

import (
	"sync"
	"time"

	"github.com/statefun-go/statefun/runtime/internal/jwtauth"
)

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

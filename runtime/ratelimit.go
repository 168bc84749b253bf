package statefun

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

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

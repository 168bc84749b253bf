package embedded_test

import (
	"testing"

	"github.com/statefun-go/statefun/runtime/store/embedded"
	"github.com/statefun-go/statefun/runtime/store/storetest"
)

// BenchmarkViewQuery is storetest.BenchViewQueries on the embedded
// store, with fsync on.
//
// The store answers from the in-memory table it keeps per version, which
// the load builds as it writes; reopened, the store would build it again
// on the first query (not measured here). The range query walks the
// sorted index of its ORDER BY column between its bounds, and stops at
// its LIMIT.
//
// The queries are CPU work in this process, with more callers than
// cores: the p99 includes waiting for a core, and Go preempts a running
// goroutine only every 10 ms or so, so with 16 callers on 2 cores a
// query that is preempted waits for the others' time slices (a p99 of
// hundreds of milliseconds beside a p50 under one, with or without the
// garbage collector).
//
// The results are named by store, BenchmarkViewQuery/embedded/..., as the
// other store's are, so that a report can tell them apart.
func BenchmarkViewQuery(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		s, err := embedded.Open(b.TempDir())
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		storetest.BenchViewQueries(b, s)
	})
}

package embedded_test

import (
	"fmt"
	"testing"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/embedded"
)

// BenchmarkCommit measures group commit with fsync on, as a server runs:
// each Commit carries one event for each of size entities, the shape of a
// journal writer batch under load. events/s is what the disk allows.
func BenchmarkCommit(b *testing.B) {
	payload := make([]byte, 128)
	for _, size := range []int{1, 16, 64, 256} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			s, err := embedded.Open(b.TempDir())
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			refs := make([]store.Ref, size)
			for i := range refs {
				refs[i] = store.Ref{Type: "cart", ID: fmt.Sprintf("cart-%06d", i)}
			}
			batch := &store.Batch{Events: make([]store.Event, size)}
			seq := int64(0)
			b.SetBytes(int64(size * len(payload)))
			for b.Loop() {
				seq++
				for i, ref := range refs {
					batch.Events[i] = store.Event{Entity: ref, Seq: seq, EventType: "ItemAdded", Payload: payload}
				}
				if err := s.Commit(ctx, batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(seq)*float64(size)/b.Elapsed().Seconds(), "events/s")
		})
	}
}

package postgres_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/statefun-go/statefun/runtime/store"
)

// BenchmarkCommitHotEntity commits batches to one long-lived entity and to
// distinct new entities: the cost per commit must not grow with the
// entity's history. (The gap check written as WHERE NOT EXISTS made
// one-entity batches of 32 cost 8.5 ms against 1.2 ms for new entities.)
func BenchmarkCommitHotEntity(b *testing.B) {
	for _, size := range []int{1, 32} {
		for _, spread := range []string{"one-entity", "new-entities"} {
			b.Run(fmt.Sprintf("%s/batch-%d", spread, size), func(b *testing.B) {
				s, _ := openStore(b)
				defer s.Close()
				ctx := context.Background()
				seqs := map[string]int64{}
				b.ResetTimer()
				start := time.Now()
				for i := 0; i < b.N; i++ {
					var batch store.Batch
					for j := 0; j < size; j++ {
						id := "hot"
						if spread == "new-entities" {
							id = fmt.Sprint(i*size + j)
						}
						seqs[id]++
						batch.Events = append(batch.Events, store.Event{Entity: store.Ref{Type: "cart", ID: id}, Seq: seqs[id], EventType: "E", Payload: []byte("payload")})
					}
					if err := s.Commit(ctx, &batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(time.Since(start).Microseconds())/float64(b.N), "µs/commit")
			})
		}
	}
}

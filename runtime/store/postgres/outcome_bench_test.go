package postgres_test

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statefun-go/statefun/runtime/store"
)

// BenchmarkOutcomeStorage measures what the database keeps per retained
// idempotency key: the growth of the outcomes table, its indexes
// included, per outcome committed (bytes/key), and the indexes' part of
// it (index-bytes/key). The outcomes are realistic: a UUID
// key (36 bytes), an entity ID of 100 bytes, a reply of 50, ten keys per
// entity, committed 500 to a batch. Run it with a fixed count, such as
// -benchtime 200x (100,000 keys), so that the pages half filled at the
// end weigh little.
func BenchmarkOutcomeStorage(b *testing.B) {
	const perBatch, keysPerEntity = 500, 10
	s, schema := openStore(b)
	defer s.Close()
	conn, err := pgx.Connect(b.Context(), databaseURL())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(b.Context())
	table := pgx.Identifier{schema, "outcomes"}.Sanitize()
	size := func() (total, indexes int64) {
		if err := conn.QueryRow(b.Context(), "SELECT pg_total_relation_size($1::regclass), pg_indexes_size($1::regclass)", table).Scan(&total, &indexes); err != nil {
			b.Fatal(err)
		}
		return total, indexes
	}
	reply := make([]byte, 50)
	batch := &store.Batch{Outcomes: make([]store.Outcome, perBatch)}
	keys := 0
	totalBefore, indexesBefore := size()
	for b.Loop() {
		expires := time.Now().Add(24 * time.Hour)
		for i := range batch.Outcomes {
			id := fmt.Sprintf("%0100d", keys/keysPerEntity)
			_, _ = rand.Read(reply)
			batch.Outcomes[i] = store.Outcome{Entity: store.Ref{Type: "cart", ID: id}, Key: uuid(), Reply: reply, Expires: expires}
			keys++
		}
		if err := s.Commit(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
	total, indexes := size()
	b.ReportMetric(float64(total-totalBefore)/float64(keys), "bytes/key")
	b.ReportMetric(float64(indexes-indexesBefore)/float64(keys), "index-bytes/key")
}

// uuid returns a random UUID in its 36-character text form.
func uuid() string {
	var u [16]byte
	_, _ = rand.Read(u[:])
	u[6] = u[6]&0x0f | 0x40
	u[8] = u[8]&0x3f | 0x80
	h := fmt.Sprintf("%x", u)
	return strings.Join([]string{h[:8], h[8:12], h[12:16], h[16:20], h[20:]}, "-")
}

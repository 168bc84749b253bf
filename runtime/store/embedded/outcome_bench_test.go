package embedded

import (
	"crypto/rand"
	"fmt"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/statefun-go/statefun/runtime/store"
)

// BenchmarkOutcomeStorage measures what the file keeps per retained
// idempotency key: the pages of the outcomes bucket and its expiry index
// per outcome committed, for the outcomes of the Postgres benchmark of
// the same name. It counts allocated pages rather than the file's size,
// which grows in steps of many megabytes. Run it with a fixed count,
// such as -benchtime 200x (100,000 keys).
func BenchmarkOutcomeStorage(b *testing.B) {
	const perBatch, keysPerEntity = 500, 10
	s, err := Open(b.TempDir(), WithNoSync(true))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	reply := make([]byte, 50)
	batch := &store.Batch{Outcomes: make([]store.Outcome, perBatch)}
	keys := 0
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
	var allocated int
	if err := s.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{outcomesBucket, outcomeExpiryBucket} {
			st := tx.Bucket(name).Stats()
			allocated += st.BranchAlloc + st.LeafAlloc + st.InlineBucketInuse
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(allocated)/float64(keys), "bytes/key")
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

package postgres

import (
	"cmp"
	"context"
	"crypto/rand"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/statefun-go/statefun/runtime/store"
)

// The CPU that Postgres spends per durable write, measured on the server's
// backends through /proc: these run only where Postgres runs on the same
// machine as the test (the default, 127.0.0.1). PERFORMANCE.md, "Postgres
// CPU per durable write", reports the figures and how they were taken.

// cartWorkload makes batches shaped like the shopping cart's at
// concurrency 64 (BENCHMARKS.md): with one batch in flight, a commit
// carries about 22 AddItem commands, each one ItemAdded event of a cart
// drawn uniformly from 10,000 that already have a history; with keys,
// each command also carries its idempotency outcome (an empty reply), as
// when the load generator retries.
type cartWorkload struct {
	carts, writesPerBatch int
	keys                  bool
	rng                   *mathrand.Rand
	seqs                  []int64
	written               int
	picked                []int // the carts of the last batch
}

const cartType = "shopping-cart"

func newCartWorkload(carts, writesPerBatch int, keys bool) *cartWorkload {
	return &cartWorkload{
		carts: carts, writesPerBatch: writesPerBatch, keys: keys,
		rng:  mathrand.New(mathrand.NewPCG(1, 2)),
		seqs: make([]int64, carts),
	}
}

func cartID(i int) string { return fmt.Sprintf("cart-%05d", i) }

// itemAdded is an ItemAdded{sku, quantity: 1} in protobuf binary.
var itemAdded = []byte{0x0a, 0x08, 's', 'k', 'u', '-', '0', '0', '0', '2', 0x10, 0x01}

// seed gives every cart its first event, so that the measured writes
// append to existing histories, as in a running shop.
func (w *cartWorkload) seed(ctx context.Context, tb testing.TB, s *Store) {
	tb.Helper()
	const perBatch = 1000
	for start := 0; start < w.carts; start += perBatch {
		var b store.Batch
		for i := start; i < min(start+perBatch, w.carts); i++ {
			w.seqs[i]++
			b.Events = append(b.Events, store.Event{Entity: store.Ref{Type: cartType, ID: cartID(i)}, Seq: w.seqs[i], EventType: "ItemAdded", Payload: itemAdded})
		}
		if err := s.Commit(ctx, &b); err != nil {
			tb.Fatalf("seed the carts: %v", err)
		}
	}
}

// next returns the next batch.
func (w *cartWorkload) next() *store.Batch {
	b := &store.Batch{}
	expires := time.Now().Add(24 * time.Hour)
	w.picked = w.picked[:0]
	for range w.writesPerBatch {
		i := w.rng.IntN(w.carts)
		w.picked = append(w.picked, i)
		w.seqs[i]++
		w.written++
		ref := store.Ref{Type: cartType, ID: cartID(i)}
		b.Events = append(b.Events, store.Event{Entity: ref, Seq: w.seqs[i], EventType: "ItemAdded", Payload: itemAdded})
		if w.keys {
			b.Outcomes = append(b.Outcomes, store.Outcome{Entity: ref, Key: "load-7-" + strconv.Itoa(w.written), Expires: expires})
		}
	}
	return b
}

// undo forgets the last batch, which was not written.
func (w *cartWorkload) undo() {
	for _, i := range w.picked {
		w.seqs[i]--
	}
}

// backends measures the CPU time of the Postgres backends serving the
// connections of one application_name, read from /proc/<pid>/schedstat
// (nanoseconds on a CPU, user and system). Backends that come and go
// between two readings are missed, so the connections must outlive the
// measurement: the stores here keep theirs in the pool.
type backends struct {
	conn *pgx.Conn
	app  string
}

func newBackends(ctx context.Context, tb testing.TB, url, app string) *backends {
	tb.Helper()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = conn.Close(context.WithoutCancel(ctx)) })
	return &backends{conn: conn, app: app}
}

// cpu returns the CPU time of each backend of the application, by pid.
func (b *backends) cpu(ctx context.Context, tb testing.TB) map[int]cpuTime {
	tb.Helper()
	rows, err := b.conn.Query(ctx, "SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid()", b.app)
	if err != nil {
		tb.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		tb.Fatal(err)
	}
	if len(pids) == 0 {
		tb.Fatalf("no backend has application_name %q", b.app)
	}
	cpu := map[int]cpuTime{}
	for _, pid := range pids {
		t, err := processCPU(int(pid))
		if err != nil {
			tb.Skipf("backend CPU is read from /proc, so Postgres must run on this machine: %v", err)
		}
		cpu[int(pid)] = t
	}
	return cpu
}

// since returns the CPU the backends spent since the reading before.
func (b *backends) since(ctx context.Context, tb testing.TB, before map[int]cpuTime) cpuTime {
	tb.Helper()
	var spent cpuTime
	for pid, t := range b.cpu(ctx, tb) {
		spent.total += t.total - before[pid].total
		spent.kernel += t.kernel - before[pid].kernel
	}
	return spent
}

// cpuTime is a process's time on a CPU: in all, to the nanosecond
// (/proc/<pid>/schedstat), and in the kernel, to the clock tick
// (/proc/<pid>/stat, 10 ms where USER_HZ is 100, as on Linux).
type cpuTime struct{ total, kernel time.Duration }

func processCPU(pid int) (cpuTime, error) {
	sched, err := os.ReadFile(fmt.Sprintf("/proc/%d/schedstat", pid))
	if err != nil {
		return cpuTime{}, err
	}
	field, _, _ := strings.Cut(string(sched), " ")
	total, err := strconv.ParseInt(field, 10, 64)
	if err != nil {
		return cpuTime{}, fmt.Errorf("/proc/%d/schedstat: %w", pid, err)
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return cpuTime{}, err
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: stime is the 15th field of the line, the 13th after.
	_, rest, _ := strings.Cut(string(stat), ") ")
	fields := strings.Fields(rest)
	if len(fields) < 13 {
		return cpuTime{}, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ticks, err := strconv.ParseInt(fields[12], 10, 64)
	if err != nil {
		return cpuTime{}, fmt.Errorf("/proc/%d/stat: %w", pid, err)
	}
	return cpuTime{total: time.Duration(total), kernel: time.Duration(ticks) * 10 * time.Millisecond}, nil
}

// cpuTestDatabase returns the test database's URL with an application
// name of its own, and a fresh schema dropped when tb ends.
func cpuTestDatabase(tb testing.TB) (url, app, schema string) {
	tb.Helper()
	url = os.Getenv("STATEFUN_TEST_DATABASE_URL")
	if url == "" {
		url = "postgres://postgres@127.0.0.1:5432/statefun_test?sslmode=disable"
	}
	suffix := strings.ToLower(rand.Text())
	schema, app = "statefun_cpu_"+suffix, "statefun_cpu_"+suffix
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	tb.Cleanup(func() {
		ctx := context.WithoutCancel(tb.Context())
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+quoteSchema(schema)+" CASCADE"); err != nil {
			tb.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return url + sep + "application_name=" + app, app, schema
}

// BenchmarkCommitCPU commits the shopping cart's batches (cartWorkload)
// one after the other, as the journal writer does with one batch in
// flight, and reports the Postgres backends' CPU per durable write
// (postgres-µs/write) beside the wall time per batch (ns/op).
func BenchmarkCommitCPU(b *testing.B) {
	for _, c := range []struct {
		name           string
		writesPerBatch int
		keys           bool
	}{
		{"cart/22-writes", 22, false},
		{"cart-keys/22-writes", 22, true},
		{"cart/500-writes", 500, false},
	} {
		b.Run(c.name, func(b *testing.B) {
			ctx := b.Context()
			url, app, schema := cpuTestDatabase(b)
			s, err := Open(ctx, url, WithSchema(schema))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			w := newCartWorkload(10_000, c.writesPerBatch, c.keys)
			w.seed(ctx, b, s)
			pg := newBackends(ctx, b, url, app)
			before := pg.cpu(ctx, b)
			for b.Loop() {
				if err := s.Commit(ctx, w.next()); err != nil {
					b.Fatal(err)
				}
			}
			spent := pg.since(ctx, b, before)
			writes := float64(b.N * c.writesPerBatch)
			b.ReportMetric(float64(spent.total.Nanoseconds())/1e3/writes, "postgres-µs/write")
			b.ReportMetric(float64(spent.kernel.Nanoseconds())/1e3/writes, "postgres-kernel-µs/write")
		})
	}
}

// TestCommitCPUBreakdown prints where the Postgres CPU of a commit goes.
// The cart workload's batches run as the whole commit and as each of its
// statements alone (each alone still pays a round trip and a transaction:
// compare with the first lines), on one connection, and each line is the
// backend CPU per write. Copies of the events table with fewer indexes
// price each index. It also prints what EXPLAIN (ANALYZE, BUFFERS, WAL)
// says of each statement of one batch, which index each table's scans
// used, and whether the statements run on generic plans. Set
// STATEFUN_PGCPU=1 to run it: it takes about a minute, and it measures
// rather than checks. STATEFUN_PGCPU_PARTS=text keeps only the parts whose
// name holds text (and the whole commit, the reference);
// STATEFUN_PGCPU_ROUNDS=n spreads the same 1,050 batches over n rounds.
func TestCommitCPUBreakdown(t *testing.T) {
	if os.Getenv("STATEFUN_PGCPU") != "1" {
		t.Skip("set STATEFUN_PGCPU=1 to measure where a commit's Postgres CPU goes")
	}
	ctx := t.Context()
	url, app, schema := cpuTestDatabase(t)
	s, err := Open(ctx, url, WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	q := quoteSchema(schema)
	events := q + ".events ("
	for _, ddl := range []string{
		"CREATE TABLE " + q + ".cpu_commit (n int)",
		"CREATE TABLE " + q + ".events_heap (LIKE " + q + ".events INCLUDING DEFAULTS)",
		"CREATE TABLE " + q + ".events_pk (LIKE " + q + ".events INCLUDING DEFAULTS)",
		"ALTER TABLE " + q + ".events_pk ADD PRIMARY KEY (entity_type, entity_id, seq)",
	} {
		if _, err := conn.Exec(ctx, ddl); err != nil {
			t.Fatalf("%s: %v", ddl, err)
		}
	}
	pg := newBackends(ctx, t, url, app)
	rounds, batchesPerRound := 7, 150
	if n, err := strconv.Atoi(os.Getenv("STATEFUN_PGCPU_ROUNDS")); err == nil {
		rounds, batchesPerRound = n, 1050/n
	}
	const writesPerBatch, carts = 22, 10_000

	// Each events table has a workload of its own, seeded alike; parts
	// that write no events read the real table's and leave it as it was.
	workloads := map[string]*cartWorkload{}
	workload := func(table string) *cartWorkload {
		if w, ok := workloads[table]; ok {
			return w
		}
		w := newCartWorkload(carts, writesPerBatch, true)
		seed := &store.Batch{}
		for i := range carts {
			w.seqs[i]++
			seed.Events = append(seed.Events, store.Event{Entity: store.Ref{Type: cartType, ID: cartID(i)}, Seq: 1, EventType: "ItemAdded", Payload: itemAdded})
		}
		plan := planCommit(seed)
		for _, qq := range plan.commitStatements(seed, s.sql).QueuedQueries {
			if strings.Contains(qq.SQL, events) {
				if _, err := conn.Exec(ctx, strings.Replace(qq.SQL, events, table, 1), qq.Arguments...); err != nil {
					t.Fatal(err)
				}
			}
		}
		workloads[table] = w
		return w
	}
	// keep makes a part of the statements of a commit that contain text,
	// writing to table instead of events.
	keep := func(text, table string) func(*pgx.Batch) *pgx.Batch {
		return func(full *pgx.Batch) *pgx.Batch {
			part := &pgx.Batch{}
			for _, qq := range full.QueuedQueries {
				if strings.Contains(qq.SQL, text) {
					sql := qq.SQL
					if table != "" {
						sql = strings.Replace(sql, events, table, 1)
					}
					part.Queue(sql, qq.Arguments...)
				}
			}
			return part
		}
	}
	fixed := func(sql string) func(*pgx.Batch) *pgx.Batch {
		return func(*pgx.Batch) *pgx.Batch {
			b := &pgx.Batch{}
			b.Queue(sql)
			return b
		}
	}
	whole := func(full *pgx.Batch) *pgx.Batch { return full }
	// unchecked drops the gap check from the events INSERT: no row is
	// marked as having to follow a stored one.
	unchecked := func(part func(*pgx.Batch) *pgx.Batch) func(*pgx.Batch) *pgx.Batch {
		return func(full *pgx.Batch) *pgx.Batch {
			b := part(full)
			for _, qq := range b.QueuedQueries {
				if strings.Contains(qq.SQL, "follows_stored") {
					qq.Arguments = slices.Clone(qq.Arguments)
					qq.Arguments[5] = make([]bool, len(qq.Arguments[5].([]bool)))
				}
			}
			return b
		}
	}
	type cpuPart struct {
		name string
		// table is the events table the part writes to, "" for none.
		table string
		keys  bool
		// batch makes the part's statements from the whole commit's.
		batch func(full *pgx.Batch) *pgx.Batch
	}
	const reference = "whole commit, no keys"
	parts := []cpuPart{
		{"round trip, nothing written (SELECT 1)", "", false, fixed("SELECT 1")},
		{"commit of a one-row insert (WAL flush)", "", false, fixed("INSERT INTO " + q + ".cpu_commit VALUES (1)")},
		{"events insert alone, unchecked, heap only", q + ".events_heap (", false, unchecked(keep(events, q+".events_heap ("))},
		{"events insert alone, unchecked, heap + primary key", q + ".events_pk (", false, unchecked(keep(events, q+".events_pk ("))},
		{"events insert alone, unchecked, + feed index", events, false, unchecked(keep(events, events))},
		{"events insert alone, with its gap check", events, false, keep(events, events)},
		{"outcomes insert alone", "", true, keep(q+".outcomes ", "")},
		{"outcomes insert alone, plain INSERT (a bound)", "", true, plainOutcomes(q)},
		{reference, events, false, whole},
		{"whole commit, keys", events, true, whole},
	}
	if only := os.Getenv("STATEFUN_PGCPU_PARTS"); only != "" {
		parts = slices.DeleteFunc(parts, func(p cpuPart) bool { return p.name != reference && !strings.Contains(p.name, only) })
	}
	ref := slices.IndexFunc(parts, func(p cpuPart) bool { return p.name == reference })
	// Rounds take turns through the parts, so that the machine's load
	// (shared, here) weighs on each alike. Each line gives the median
	// round, the mean kernel share, the quickest round, and the median of
	// the part's CPU divided by the whole commit's in the same round: the
	// figure that the load disturbs least.
	samples := make([][]cpuTime, len(parts))
	for round := range rounds {
		for i, part := range parts {
			w := workload(cmp.Or(part.table, events))
			w.keys = part.keys
			w.written = (round*len(parts) + i + 1) * batchesPerRound * writesPerBatch // fresh idempotency keys
			before := pg.cpu(ctx, t)
			for range batchesPerRound {
				b := w.next()
				if part.table == "" {
					w.undo()
				}
				plan := planCommit(b)
				if err := conn.SendBatch(ctx, part.batch(plan.commitStatements(b, s.sql))).Close(); err != nil {
					t.Fatalf("%s: %v", part.name, err)
				}
			}
			samples[i] = append(samples[i], pg.since(ctx, t, before))
		}
	}
	t.Logf("Postgres backend CPU per write, batches of %d writes over %d carts, median of %d rounds of %d batches:", writesPerBatch, carts, rounds, batchesPerRound)
	t.Logf("  %-55s %8s %8s %8s %8s", "part", "µs", "kernel", "min µs", "÷ whole")
	perWrite := func(d time.Duration) float64 {
		return float64(d.Nanoseconds()) / 1e3 / float64(batchesPerRound*writesPerBatch)
	}
	ratios := make([][]float64, len(parts))
	for i := range parts {
		for r := range rounds {
			ratios[i] = append(ratios[i], float64(samples[i][r].total)/float64(samples[ref][r].total))
		}
		slices.Sort(ratios[i])
	}
	for i, part := range parts {
		slices.SortFunc(samples[i], func(x, y cpuTime) int { return cmp.Compare(x.total, y.total) })
		var kernel time.Duration
		for _, c := range samples[i] {
			kernel += c.kernel
		}
		median := samples[i][len(samples[i])/2]
		t.Logf("  %-55s %8.1f %8.1f %8.1f %8.2f", part.name, perWrite(median.total), perWrite(kernel/time.Duration(rounds)), perWrite(samples[i][0].total), ratios[i][rounds/2])
	}

	// Which index served which part: the scans of each index, and of each
	// table without one, in this test's schema.
	if _, err := conn.Exec(ctx, "SELECT pg_stat_force_next_flush()"); err != nil {
		t.Fatal(err)
	}
	scans, err := conn.Query(ctx, `SELECT relname, coalesce(indexrelname, '(sequential)'), coalesce(i.idx_scan, t.seq_scan), coalesce(i.idx_tup_read, t.seq_tup_read)
		FROM pg_stat_user_tables AS t LEFT JOIN pg_stat_user_indexes AS i USING (relid, schemaname, relname)
		WHERE schemaname = $1 ORDER BY 1, 2`, schema)
	if err != nil {
		t.Fatal(err)
	}
	for scans.Next() {
		var table, index string
		var n, read int64
		if err := scans.Scan(&table, &index, &n, &read); err != nil {
			t.Fatal(err)
		}
		t.Logf("scans: %s %s: %d, %d rows read", table, index, n, read)
	}
	scans.Close()

	plans, err := conn.Query(ctx, "SELECT generic_plans, custom_plans, left(regexp_replace(statement, '\\s+', ' ', 'g'), 60) FROM pg_prepared_statements")
	if err != nil {
		t.Fatal(err)
	}
	for plans.Next() {
		var generic, custom int64
		var sql string
		if err := plans.Scan(&generic, &custom, &sql); err != nil {
			t.Fatal(err)
		}
		t.Logf("plans: %d generic, %d custom: %s", generic, custom, sql)
	}
	plans.Close()

	// What each statement of one batch does, by EXPLAIN, rolled back.
	w := workload(events)
	w.keys = true
	b := w.next()
	plan := planCommit(b)
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	for _, qq := range plan.commitStatements(b, s.sql).QueuedQueries {
		rows, err := tx.Query(ctx, "EXPLAIN (ANALYZE, BUFFERS, WAL, COSTS OFF) "+qq.SQL, qq.Arguments...)
		if err != nil {
			t.Fatal(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("EXPLAIN of one batch of %d writes:\n%s\n    %s", writesPerBatch, firstLine(qq.SQL), strings.Join(lines, "\n    "))
	}
}

// firstLine returns the first line of sql that is not a comment.
func firstLine(sql string) string {
	for line := range strings.Lines(sql) {
		if !strings.HasPrefix(line, "--") {
			return strings.TrimSpace(line)
		}
	}
	return sql
}

// plainOutcomes writes a batch's outcomes with a plain INSERT: no
// replacing of an expired outcome, no count of the rows written. It is
// not a correct commit, only the bound of what a cheaper statement could
// save.
func plainOutcomes(q string) func(*pgx.Batch) *pgx.Batch {
	return func(full *pgx.Batch) *pgx.Batch {
		part := &pgx.Batch{}
		for _, qq := range full.QueuedQueries {
			if strings.Contains(qq.SQL, q+".outcomes ") {
				part.Queue("INSERT INTO "+q+".outcomes (expires, code, key_hash, entity_type, entity_id, key, message, reply) "+
					"SELECT * FROM unnest($1::timestamptz[], $2::bigint[], $3::bytea[], $4::text[], $5::bytea[], $6::bytea[], $7::bytea[], $8::bytea[])", qq.Arguments...)
			}
		}
		return part
	}
}

// TestCopyVersusUnnestCPU prices the two ways to send a large batch of
// events: the INSERT from arrays that Commit uses, in one round trip, and
// COPY, which writes the heap rows page by page (one WAL record a page,
// not a row) but needs a transaction of its own around it (BEGIN, COPY,
// COMMIT: three round trips) and cannot check anything as it goes. Both
// write batches of 500 events, with no gap check, into copies of the
// events table with its indexes. Set STATEFUN_PGCPU=1 to run it.
func TestCopyVersusUnnestCPU(t *testing.T) {
	if os.Getenv("STATEFUN_PGCPU") != "1" {
		t.Skip("set STATEFUN_PGCPU=1 to measure COPY against INSERT from arrays")
	}
	ctx := t.Context()
	url, app, schema := cpuTestDatabase(t)
	s, err := Open(ctx, url, WithSchema(schema))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	q := quoteSchema(schema)
	for _, table := range []string{"events_unnest", "events_copy"} {
		ddl := "CREATE TABLE " + q + "." + table + " (LIKE " + q + ".events INCLUDING DEFAULTS INCLUDING INDEXES)"
		if _, err := conn.Exec(ctx, ddl); err != nil {
			t.Fatalf("%s: %v", ddl, err)
		}
	}
	pg := newBackends(ctx, t, url, app)
	const rounds, batchesPerRound, writesPerBatch, carts = 7, 20, 500, 10_000
	insert := strings.Replace(s.sql.insertEvents, q+".events (", q+".events_unnest (", 1)
	ways := []struct {
		name  string
		write func(*store.Batch) error
	}{
		{"INSERT from arrays, one round trip", func(b *store.Batch) error {
			full := planCommit(b)
			for _, qq := range full.commitStatements(b, s.sql).QueuedQueries {
				if strings.Contains(qq.SQL, "follows_stored") {
					args := slices.Clone(qq.Arguments)
					args[5] = make([]bool, len(b.Events))
					_, err := conn.Exec(ctx, insert, args...)
					return err
				}
			}
			return fmt.Errorf("the commit has no events INSERT")
		}},
		{"COPY in BEGIN ... COMMIT", func(b *store.Batch) error {
			events := slices.Clone(b.Events)
			slices.SortFunc(events, func(x, y store.Event) int {
				return cmp.Or(cmp.Compare(x.Entity.ID, y.Entity.ID), cmp.Compare(x.Seq, y.Seq))
			})
			rows := make([][]any, len(events))
			for i, e := range events {
				rows[i] = []any{e.Entity.Type, []byte(e.Entity.ID), e.Seq, e.EventType, e.Payload, int64(i + 1)}
			}
			return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
				_, err := tx.CopyFrom(ctx, pgx.Identifier{schema, "events_copy"},
					[]string{"entity_type", "entity_id", "seq", "event_type", "payload", "feed_pos"}, pgx.CopyFromRows(rows))
				return err
			})
		}},
	}
	workloads := make([]*cartWorkload, len(ways))
	for i, way := range ways {
		workloads[i] = newCartWorkload(carts, writesPerBatch, false)
		seed := &store.Batch{}
		for c := range carts {
			workloads[i].seqs[c]++
			seed.Events = append(seed.Events, store.Event{Entity: store.Ref{Type: cartType, ID: cartID(c)}, Seq: 1, EventType: "ItemAdded", Payload: itemAdded})
		}
		if err := way.write(seed); err != nil {
			t.Fatalf("%s: %v", way.name, err)
		}
	}
	samples := make([][]time.Duration, len(ways))
	for range rounds {
		for i, way := range ways {
			before := pg.cpu(ctx, t)
			for range batchesPerRound {
				if err := way.write(workloads[i].next()); err != nil {
					t.Fatalf("%s: %v", way.name, err)
				}
			}
			samples[i] = append(samples[i], pg.since(ctx, t, before).total)
		}
	}
	t.Logf("Postgres backend CPU per event, batches of %d events, median of %d rounds of %d batches:", writesPerBatch, rounds, batchesPerRound)
	for i, way := range ways {
		slices.Sort(samples[i])
		t.Logf("  %-40s %6.1f µs", way.name, float64(samples[i][rounds/2].Nanoseconds())/1e3/float64(batchesPerRound*writesPerBatch))
	}
}

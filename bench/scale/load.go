package scale

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
	"github.com/statefun-go/statefun/runtime/store/postgres"
)

// chunkEntities is how many carts one loading transaction writes: small
// enough that an interrupted load loses little, large enough that a
// transaction's overhead does not matter.
const chunkEntities = 5000

// The bookkeeping of a load lives beside the store's schema, in public:
// which data set the database holds, and which chunks of it are written.
const (
	markerTable = "public.statefun_scale_dataset"
	chunksTable = "public.statefun_scale_chunks"
)

// LoadOptions tune Load.
type LoadOptions struct {
	// Streams is the number of COPY streams writing at once.
	Streams int
	// Reset drops a data set of another version (and the store's schema
	// with it) instead of refusing to touch it.
	Reset bool
	// Schema is the store's schema to fill ("statefun" if empty): the
	// server's --database-schema.
	Schema string
	// Logf reports progress.
	Logf func(format string, args ...any)
}

// Loaded describes the data set in the database after Load.
type Loaded struct {
	// Reused is true when the database held the whole data set already.
	Reused bool
	// SchemaVersion is the store's migration version.
	SchemaVersion int
	// Took is the wall time of writing it, over every session that wrote
	// part of it.
	Took time.Duration
	// Resumed is true when an earlier, interrupted load had written part.
	Resumed bool
	// TableBytes is the size on disk of the events and snapshots tables
	// with their indexes.
	EventsBytes, SnapshotsBytes int64
}

// Load makes the database at url hold the data set, in the shopping cart
// server's schema: the store's own migration creates the tables, and the
// rows are those the runtime would have committed (events) and saved
// (snapshots, after the 100th event). A database that holds the data set
// already is left alone; one that holds part of it (an interrupted load)
// gets the rest.
//
// The events table's indexes are dropped while the rows stream in and
// built again at the end, from their definitions as the migration made
// them (kept in the bookkeeping table meanwhile, so that an interrupted
// load still rebuilds them): building an index once is several times
// faster than maintaining it row by row, and makes it half the size.
func Load(ctx context.Context, url string, d Dataset, o LoadOptions) (Loaded, error) {
	var res Loaded
	if o.Streams < 1 {
		o.Streams = 1
	}
	if o.Schema == "" {
		o.Schema = postgres.DefaultSchema
	}
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	l := loader{d: d, schema: o.Schema, logf: logf}
	start := time.Now()
	_, to, err := postgres.Migrate(ctx, url, postgres.WithSchema(o.Schema))
	if err != nil {
		return res, fmt.Errorf("migrate the store's schema: %w", err)
	}
	res.SchemaVersion = to
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return res, err
	}
	defer pool.Close()
	l.pool = pool

	m, err := l.readMarker(ctx)
	if err != nil {
		return res, err
	}
	want := marker{version: DatasetVersion, entities: d.Entities, events: d.EventsPerEntity, chunk: chunkEntities, schema: to}
	switch {
	case m != nil && m.sameData(want) && m.complete && m.schema <= want.schema:
		if m.schema < want.schema {
			// Migrate above upgraded the tables in place, as it upgrades
			// a user's: the rows are the data set still.
			logf("the data set's store schema was upgraded in place from version %d to %d", m.schema, want.schema)
			if _, err := pool.Exec(ctx, "UPDATE "+markerTable+" SET schema_version = $2 WHERE schema_name = $1", o.Schema, want.schema); err != nil {
				return res, err
			}
		}
		res.Reused, res.Took = true, m.took
		res.EventsBytes, res.SnapshotsBytes, err = l.tableSizes(ctx)
		return res, err
	case m != nil && !m.same(want), m == nil:
		if m == nil {
			var any bool
			if err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT FROM "+l.table("events")+")").Scan(&any); err != nil {
				return res, err
			}
			if !any {
				break
			}
		}
		if !o.Reset {
			return res, fmt.Errorf("schema %s holds another data set (%v, want %v) or events of its own; run with -reset to drop them (and the schema), or use another schema or database", o.Schema, m, &want)
		}
		logf("dropping the data set in schema %s (%v) and the schema", o.Schema, m)
		if _, err := pool.Exec(ctx, "DROP SCHEMA "+l.quoted()+" CASCADE"); err != nil {
			return res, err
		}
		if _, err := pool.Exec(ctx, "DELETE FROM "+markerTable+" WHERE schema_name = $1", o.Schema); err != nil {
			return res, err
		}
		if _, err := pool.Exec(ctx, "DELETE FROM "+chunksTable+" WHERE schema_name = $1", o.Schema); err != nil {
			return res, err
		}
		if _, _, err := postgres.Migrate(ctx, url, postgres.WithSchema(o.Schema)); err != nil {
			return res, fmt.Errorf("migrate the store's schema: %w", err)
		}
		m = nil
	}
	if m == nil {
		if err := l.start(ctx, want); err != nil {
			return res, err
		}
	} else {
		res.Resumed = true
	}
	// The registry of event types holds every type stored (invariant 9):
	// the store's commit would have registered it with the first event.
	if _, err := pool.Exec(ctx, "INSERT INTO "+l.table("event_types")+" (entity_type, event_type) VALUES ($1, $2) ON CONFLICT DO NOTHING",
		cartv1.ShoppingCartEntityType, "ItemAdded"); err != nil {
		return res, err
	}
	if err := l.copyChunks(ctx, o.Streams, start); err != nil {
		return res, err
	}
	if err := l.rebuildIndexes(ctx, start); err != nil {
		return res, err
	}
	// Statistics let the planner see the tables' size (autovacuum may be
	// off), and a vacuum sets the visibility and hint bits a long-lived
	// table has, so that the first reads of the measurement do not write.
	logf("vacuum and analyze (%s so far)", time.Since(start).Round(time.Second))
	for _, t := range []string{"events", "snapshots", "event_types"} {
		if _, err := pool.Exec(ctx, "VACUUM (ANALYZE) "+l.table(t)); err != nil {
			return res, err
		}
	}
	if _, err := pool.Exec(ctx, "UPDATE "+markerTable+" SET complete = true, load_seconds = coalesce(load_seconds, 0) + $2 WHERE schema_name = $1",
		o.Schema, time.Since(start).Seconds()); err != nil {
		return res, err
	}
	m, err = l.readMarker(ctx)
	if err != nil {
		return res, err
	}
	res.Took = m.took
	res.EventsBytes, res.SnapshotsBytes, err = l.tableSizes(ctx)
	return res, err
}

// loader writes one data set into one schema.
type loader struct {
	d      Dataset
	schema string
	pool   *pgxpool.Pool
	logf   func(string, ...any)
}

func (l *loader) quoted() string           { return pgx.Identifier{l.schema}.Sanitize() }
func (l *loader) table(name string) string { return pgx.Identifier{l.schema, name}.Sanitize() }

// start records the data set about to be written and drops the events
// table's indexes, keeping the statements that make them again, in one
// transaction.
func (l *loader) start(ctx context.Context, m marker) error {
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// A constraint's index is dropped with the constraint and made again
	// by ADD CONSTRAINT; any other index by its own definition.
	rows, err := tx.Query(ctx, `
SELECT coalesce(
        'ALTER TABLE ' || i.indrelid::regclass::text || ' ADD CONSTRAINT ' || quote_ident(c.conname) || ' ' || pg_get_constraintdef(c.oid),
        pg_get_indexdef(i.indexrelid)),
    coalesce(
        'ALTER TABLE ' || i.indrelid::regclass::text || ' DROP CONSTRAINT ' || quote_ident(c.conname),
        'DROP INDEX ' || i.indexrelid::regclass::text)
FROM pg_index AS i LEFT JOIN pg_constraint AS c ON c.conindid = i.indexrelid AND c.conrelid = i.indrelid
WHERE i.indrelid = $1::regclass
ORDER BY i.indexrelid`, l.table("events"))
	if err != nil {
		return err
	}
	var create, drop []string
	for rows.Next() {
		var c, d string
		if err := rows.Scan(&c, &d); err != nil {
			return err
		}
		create, drop = append(create, c), append(drop, d)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+markerTable+" (schema_name, version, entities, events_per_entity, chunk_entities, schema_version, indexes) VALUES ($1, $2, $3, $4, $5, $6, $7)",
		l.schema, m.version, m.entities, m.events, m.chunk, m.schema, create); err != nil {
		return err
	}
	for _, d := range drop {
		if _, err := tx.Exec(ctx, d); err != nil {
			return err
		}
	}
	return tx.Commit(ctx)
}

func (l *loader) copyChunks(ctx context.Context, streams int, start time.Time) error {
	done := map[int]bool{}
	rows, err := l.pool.Query(ctx, "SELECT chunk FROM "+chunksTable+" WHERE schema_name = $1", l.schema)
	if err != nil {
		return err
	}
	for rows.Next() {
		var c int
		if err := rows.Scan(&c); err != nil {
			return err
		}
		done[c] = true
	}
	if err := rows.Err(); err != nil {
		return err
	}
	chunks := (l.d.Size() + chunkEntities - 1) / chunkEntities
	todo := make(chan int, chunks)
	for c := range chunks {
		if !done[c] {
			todo <- c
		}
	}
	close(todo)
	l.logf("loading %d of %d chunks of %d carts × %d events, %d COPY streams", len(todo), chunks, chunkEntities, l.d.EventsPerEntity, streams)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		written  = len(done)
	)
	for range streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for c := range todo {
				if err := l.loadChunk(ctx, c); err != nil {
					mu.Lock()
					if firstErr == nil {
						firstErr = err
					}
					mu.Unlock()
					cancel()
					return
				}
				mu.Lock()
				written++
				if written%20 == 0 || written == chunks {
					l.logf("%d of %d chunks written (%s)", written, chunks, time.Since(start).Round(time.Second))
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return firstErr
}

// rebuildIndexes makes the indexes start dropped, with the memory a
// bulk build wants; an index that exists already (a rebuild interrupted
// after it) is kept.
func (l *loader) rebuildIndexes(ctx context.Context, start time.Time) error {
	var create []string
	if err := l.pool.QueryRow(ctx, "SELECT indexes FROM "+markerTable+" WHERE schema_name = $1", l.schema).Scan(&create); err != nil {
		return err
	}
	conn, err := l.pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "SET maintenance_work_mem = '1GB'"); err != nil {
		return err
	}
	defer func() { _, _ = conn.Exec(context.WithoutCancel(ctx), "RESET maintenance_work_mem") }()
	for _, c := range create {
		l.logf("%s (%s so far)", c, time.Since(start).Round(time.Second))
		_, err := conn.Exec(ctx, c)
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && (pgErr.Code == "42P07" || pgErr.Code == "42P16") { // duplicate_table, invalid_table_definition (a second primary key)
			continue
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// loadChunk writes the carts of chunk c in one transaction, with the
// record that it is written, so that a resumed load neither skips nor
// repeats a cart.
func (l *loader) loadChunk(ctx context.Context, c int) error {
	d := l.d
	first, end := c*chunkEntities, min((c+1)*chunkEntities, d.Size())
	tx, err := l.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()
	// tx_id, feed_pos and written_at take their defaults, as in the
	// store's own insert: the transaction's ID, the feed sequence (in row
	// order, which is seq order for each cart) and now().
	events := &eventRows{d: d, i: first, end: end}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{l.schema, "events"},
		[]string{"entity_type", "entity_id", "seq", "event_type", "payload"}, events); err != nil {
		return fmt.Errorf("copy the events of carts %d to %d: %w", first, end-1, err)
	}
	var snaps [][]any
	for i := first; i < end; i++ {
		if !HasSnapshot(i) {
			continue
		}
		payload, err := EncodeSnapshot(State(i, d.EventsPerEntity))
		if err != nil {
			return err
		}
		snaps = append(snaps, []any{cartv1.ShoppingCartEntityType, []byte(CartID(i)), int64(d.EventsPerEntity), payload})
	}
	if _, err := tx.CopyFrom(ctx, pgx.Identifier{l.schema, "snapshots"},
		[]string{"entity_type", "entity_id", "seq", "payload"}, pgx.CopyFromRows(snaps)); err != nil {
		return fmt.Errorf("copy the snapshots of carts %d to %d: %w", first, end-1, err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO "+chunksTable+" (schema_name, chunk) VALUES ($1, $2)", l.schema, c); err != nil {
		return err
	}
	return tx.Commit(ctx)
}

// eventRows streams the events of carts [i, end) to COPY, cart by cart in
// seq order, encoding each distinct event of a cart once.
type eventRows struct {
	d      Dataset
	i, end int
	seq    int
	id     []byte
	cache  map[[2]int][]byte
	row    [5]any
	err    error
}

func (r *eventRows) Next() bool {
	if r.err != nil {
		return false
	}
	if r.id == nil || r.seq == r.d.EventsPerEntity {
		if r.id != nil {
			r.i++
		}
		if r.i >= r.end {
			return false
		}
		r.id, r.seq, r.cache = []byte(CartID(r.i)), 0, map[[2]int][]byte{}
	}
	r.seq++
	e := Event(r.i, r.seq)
	key := [2]int{(r.seq - 1) % linesOf(r.i), int(e.GetQuantity())}
	payload, ok := r.cache[key]
	if !ok {
		payload, r.err = EncodeEvent(e)
		if r.err != nil {
			return false
		}
		r.cache[key] = payload
	}
	r.row = [5]any{cartv1.ShoppingCartEntityType, r.id, int64(r.seq), "ItemAdded", payload}
	return true
}

func (r *eventRows) Values() ([]any, error) { return r.row[:], nil }
func (r *eventRows) Err() error             { return r.err }

type marker struct {
	version, entities, events, chunk, schema int
	complete                                 bool
	took                                     time.Duration
}

func (m marker) same(o marker) bool { return m.sameData(o) && m.schema == o.schema }

// sameData reports whether m and o describe the same rows, whatever store
// schema version they were written under.
func (m marker) sameData(o marker) bool {
	return m.version == o.version && m.entities == o.entities && m.events == o.events && m.chunk == o.chunk
}

func (m *marker) String() string {
	if m == nil {
		return "none"
	}
	return fmt.Sprintf("version %d: %d carts × %d events, chunks of %d, store schema %d", m.version, m.entities, m.events, m.chunk, m.schema)
}

func (l *loader) readMarker(ctx context.Context) (*marker, error) {
	if _, err := l.pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+markerTable+` (
    schema_name text PRIMARY KEY,
    version int NOT NULL,
    entities int NOT NULL,
    events_per_entity int NOT NULL,
    chunk_entities int NOT NULL,
    schema_version int NOT NULL,
    indexes text[] NOT NULL,
    complete boolean NOT NULL DEFAULT false,
    load_seconds double precision
);
CREATE TABLE IF NOT EXISTS `+chunksTable+` (schema_name text, chunk int, PRIMARY KEY (schema_name, chunk))`); err != nil {
		return nil, err
	}
	var m marker
	var secs *float64
	err := l.pool.QueryRow(ctx, "SELECT version, entities, events_per_entity, chunk_entities, schema_version, complete, load_seconds FROM "+markerTable+" WHERE schema_name = $1", l.schema).
		Scan(&m.version, &m.entities, &m.events, &m.chunk, &m.schema, &m.complete, &secs)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if secs != nil {
		m.took = time.Duration(*secs * float64(time.Second))
	}
	return &m, nil
}

func (l *loader) tableSizes(ctx context.Context) (events, snapshots int64, err error) {
	err = l.pool.QueryRow(ctx, "SELECT pg_total_relation_size($1::regclass), pg_total_relation_size($2::regclass)", l.table("events"), l.table("snapshots")).Scan(&events, &snapshots)
	return events, snapshots, err
}

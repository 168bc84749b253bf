package statefun

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/statefun-go/statefun/internal/viewquery"
	"github.com/statefun-go/statefun/runtime/store"
)

// ValueEventType is the event type under which a key-value entity's feed
// carries its values: a view of a key-value entity gets each value written
// (the last of several written in quick succession, at least) as an event
// of this type, its payload the value, its seq the value's version.
const ValueEventType = store.ValueEventType

// ViewConfig describes a view to the runtime. Generated code fills it in;
// programs do not build it by hand.
type ViewConfig struct {
	// Name is the view's stable name.
	Name string
	// Version is the version of its rows; 0 means 1.
	Version int
	// EntityType is the stored type name of the source entity.
	EntityType string
	// Service is the gRPC service whose methods query the view.
	Service *grpc.ServiceDesc
	// NewRow returns an empty row message.
	NewRow func() proto.Message
	// Update applies one stored event of the source (for a key-value
	// source, an event of ValueEventType) to its entity's row:
	// row is the current row, or a new empty one when the entity has none
	// (ctx.Exists tells which). It returns the new row (row itself,
	// changed in place, will do), or nil to delete the row; an event it
	// has no handler for returns row as it is. An error is retried with
	// backoff, like a consumer's.
	Update func(ctx *ViewUpdateContext, row proto.Message, eventType string, payload []byte) (proto.Message, error)
	// Queries are the view's query RPCs, in declaration order: QueryView
	// and StreamView name one by its index.
	Queries []ViewQueryConfig
	// NewService returns the gRPC service implementation bound to a host.
	NewService func(*ViewHost) any
}

// ViewQueryConfig describes one query RPC of a view.
type ViewQueryConfig struct {
	// Method is the RPC's name, as in the proto ("CartsByCustomer").
	Method string
	// Query is the query, as in the proto's (statefun.v1.method).query.
	Query string
	// Request is an empty request message, for its descriptor.
	Request proto.Message
	// Response is an empty response message of a unary RPC, for its
	// descriptor: one repeated field of rows, and an optional
	// next_page_token. Nil for a server-streaming RPC.
	Response proto.Message
}

// View is a view ready to be served: the value a generated constructor
// such as NewCartsByCustomer returns. Pass it to Main, or to New with
// WithViews.
type View struct {
	cfg     ViewConfig
	queries []*viewQuery
	def     store.ViewDef
	err     error
}

func (*View) isComponent() {}

// viewQuery is one query RPC, compiled.
type viewQuery struct {
	cfg   ViewQueryConfig
	query *viewquery.Query
	// Request fields that page (absent: nil), and the response's.
	pageToken, pageSize protoreflect.FieldDescriptor
	rows, nextPageToken protoreflect.FieldDescriptor
}

// NewView turns a configuration into a View, compiling its queries.
// Generated code calls it; a configuration error is reported by New.
func NewView(cfg ViewConfig) *View {
	if cfg.Version == 0 {
		cfg.Version = 1
	}
	v := &View{cfg: cfg}
	v.err = v.compile()
	return v
}

func (v *View) compile() error {
	cfg := v.cfg
	switch {
	case !entityTypePattern.MatchString(cfg.Name):
		return fmt.Errorf("view name %q is not valid: use lowercase letters, digits, '.', '_' and '-', starting with a letter", cfg.Name)
	case cfg.Version < 0:
		return fmt.Errorf("view %q: version %d; versions count from 1", cfg.Name, cfg.Version)
	case cfg.EntityType == "" || cfg.Service == nil || cfg.NewRow == nil || cfg.Update == nil || cfg.NewService == nil:
		return fmt.Errorf("view %q: incomplete configuration; regenerate the code with protoc-gen-statefun", cfg.Name)
	}
	row := cfg.NewRow().ProtoReflect().Descriptor()
	var compiled []*viewquery.Query
	for _, qc := range cfg.Queries {
		if qc.Request == nil {
			return fmt.Errorf("view %q, query %s: no request message; regenerate the code with protoc-gen-statefun", cfg.Name, qc.Method)
		}
		req := qc.Request.ProtoReflect().Descriptor()
		q, err := viewquery.Compile(qc.Query, cfg.Name, row, req)
		if err != nil {
			return fmt.Errorf("view %q, query %s: %w", cfg.Name, qc.Method, err)
		}
		vq := &viewQuery{cfg: qc, query: q}
		vq.pageToken = stringField(req, "page_token")
		if f := req.Fields().ByName("page_size"); f != nil && f.Kind() == protoreflect.Int32Kind && !f.IsList() {
			vq.pageSize = f
		}
		if qc.Response != nil {
			resp := qc.Response.ProtoReflect().Descriptor()
			for i := range resp.Fields().Len() {
				f := resp.Fields().Get(i)
				if f.IsList() && f.Message() != nil && f.Message().FullName() == row.FullName() {
					vq.rows = f
				}
			}
			if vq.rows == nil {
				return fmt.Errorf("view %q, query %s: the response %s has no repeated %s field for the rows; regenerate the code with protoc-gen-statefun", cfg.Name, qc.Method, resp.FullName(), row.FullName())
			}
			vq.nextPageToken = stringField(resp, "next_page_token")
		}
		v.queries = append(v.queries, vq)
		compiled = append(compiled, q)
	}
	v.def = store.ViewDef{Name: cfg.Name, Version: cfg.Version, EntityType: cfg.EntityType, Columns: viewquery.Merge(compiled...)}
	return nil
}

func stringField(md protoreflect.MessageDescriptor, name protoreflect.Name) protoreflect.FieldDescriptor {
	if f := md.Fields().ByName(name); f != nil && f.Kind() == protoreflect.StringKind && !f.IsList() {
		return f
	}
	return nil
}

// Name returns the view's stable name.
func (v *View) Name() string { return v.cfg.Name }

// WithViews adds views to the runtime: values of generated constructors
// such as NewCartsByCustomer. Each is kept up to date from its source's
// events while the runtime runs, and its queries are served with the
// entities.
func WithViews(views ...*View) Option {
	return optionFunc(func(c *config) { c.views = append(c.views, views...) })
}

// viewConsumerPrefix names the consumers that update views; the version
// is part of the name, so a new version builds from the start of history.
const viewConsumerPrefix = "statefun.view."

func viewConsumerName(def store.ViewDef) string {
	return fmt.Sprintf("%s%s.v%d", viewConsumerPrefix, def.Name, def.Version)
}

// Defaults of query paging.
const (
	// defaultViewPage is the page size of a paged query whose request
	// asks for none and whose query has no LIMIT.
	defaultViewPage = 100
	// maxViewPage bounds one answer of a unary query: a query with more
	// matching rows must page or stream.
	maxViewPage = 1000
	// viewStreamChunk is how many rows a streaming query reads at a time.
	viewStreamChunk = 500
	// viewVersionCheck is how often a node that serves an older version
	// than its own looks whether the new one became ready.
	viewVersionCheck = time.Second
	// viewDropDelay is how long a replaced version is kept after its
	// successor became ready, for nodes still answering from it: those of
	// a rolling deploy still running the older binary.
	viewDropDelay = time.Hour
	// viewVersionPoll is how often a node whose version is ready looks at
	// the view's versions again (a newer binary's may be the one to
	// answer a query this one's cannot).
	viewVersionPoll = 10 * time.Second
)

// ViewHost serves one view's queries: generated query handlers call
// QueryView and StreamView with it.
type ViewHost struct {
	rt   *Runtime
	view *View
	// mu guards what this node knows of the view's stored versions:
	// whether this binary's is ready, and which are, newest first. A
	// query answers from this binary's version once it is ready, else
	// from the newest ready one with the query's columns (during a
	// rolling deploy, an older or a newer binary's).
	mu       sync.Mutex
	ready    bool
	complete []store.ViewDef

	// rows are the rows the updater wrote last.
	rows viewRowCache
	// writer writes the rows of events handled at the same time together.
	writer viewRowWriter

	updated, skipped atomic.Uint64
	done             sync.WaitGroup
}

// views are a runtime's view hosts.
type viewSet struct {
	hosts []*ViewHost
}

func validateViews(views []*View, entities map[string]Kind) []error {
	var errs []error
	seen := map[string]bool{}
	for _, v := range views {
		switch {
		case v == nil:
			errs = append(errs, errors.New("nil view; pass the value of a generated constructor such as NewCartsByCustomer"))
		case v.err != nil:
			errs = append(errs, v.err)
		case seen[v.cfg.Name]:
			errs = append(errs, fmt.Errorf("view %q is registered twice; each view runs once", v.cfg.Name))
		default:
			seen[v.cfg.Name] = true
			if _, ok := entities[v.cfg.EntityType]; !ok {
				errs = append(errs, fmt.Errorf("view %q reads the feed of entity type %q, which this server does not host; pass its entity to the server too", v.cfg.Name, v.cfg.EntityType))
			}
		}
	}
	return errs
}

// bindViews creates each view's host and its gRPC service, and its
// storage in the store.
func (r *Runtime) bindViews(ctx context.Context, views []*View) error {
	for _, v := range views {
		h := &ViewHost{rt: r, view: v}
		h.writer.h = h
		if err := h.open(ctx); err != nil {
			return err
		}
		r.views.hosts = append(r.views.hosts, h)
		r.services = append(r.services, boundService{desc: v.cfg.Service, impl: v.cfg.NewService(h)})
	}
	return nil
}

// open creates this version's storage and reads which versions are
// complete. A version the store did not hold is built from the start of
// history: its updater's position, if one is left from a version of the
// same number that was dropped, is reset.
func (h *ViewHost) open(ctx context.Context) error {
	def := h.view.def
	before, err := h.rt.store.ViewVersions(ctx, def.Name)
	if err != nil {
		return fmt.Errorf("view %q: read its versions: %w", def.Name, err)
	}
	if err := h.rt.store.EnsureView(ctx, def); err != nil {
		return fmt.Errorf("view %q: create version %d in the store: %w", def.Name, def.Version, err)
	}
	if !slices.ContainsFunc(before, func(v store.ViewVersion) bool { return v.Def.Version == def.Version }) {
		if err := h.rt.store.SaveConsumerPosition(ctx, viewConsumerName(def), def.EntityType, ""); err != nil {
			return fmt.Errorf("view %q: start version %d's updater at the beginning of history: %w", def.Name, def.Version, err)
		}
	}
	return h.refresh(ctx)
}

// refresh reads which versions of the view are complete.
func (h *ViewHost) refresh(ctx context.Context) error {
	def := h.view.def
	versions, err := h.rt.store.ViewVersions(ctx, def.Name)
	if err != nil {
		return fmt.Errorf("view %q: read its versions: %w", def.Name, err)
	}
	var complete []store.ViewDef
	for _, v := range slices.Backward(versions) {
		if v.Ready {
			complete = append(complete, v.Def)
		}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.complete = complete
	h.ready = h.ready || slices.ContainsFunc(complete, func(d store.ViewDef) bool { return d.Version == def.Version })
	return nil
}

// servingFor returns the version to answer q from, or UNAVAILABLE when
// only this binary's unfinished version could (pick).
func (h *ViewHost) servingFor(q *viewQuery) (store.ViewDef, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if def, ok := h.pickLocked(q.query.Columns); ok {
		return def, nil
	}
	own := h.view.def
	return store.ViewDef{}, status.Errorf(codes.Unavailable, "view %q version %d is being built from its source's history, and %s needs it (the complete versions lack its fields); retry later", own.Name, own.Version, q.cfg.Method)
}

// pickLocked returns the version to answer a query on columns from: this
// binary's once it is ready; else the newest complete one that has the
// columns; else, for a view never complete, this binary's as far as it is
// built. It returns false when only this binary's unfinished version has
// the columns while complete versions exist: a half-built table would
// answer without most of its rows. Called with h.mu held.
func (h *ViewHost) pickLocked(columns []store.ViewColumn) (store.ViewDef, bool) {
	own := h.view.def
	if h.ready || len(h.complete) == 0 {
		return own, true
	}
	for _, d := range h.complete {
		if hasColumns(d, columns) {
			return d, true
		}
	}
	return own, false
}

func hasColumns(def store.ViewDef, columns []store.ViewColumn) bool {
	for _, c := range columns {
		if !slices.ContainsFunc(def.Columns, func(d store.ViewColumn) bool { return d.Name == c.Name }) {
			return false
		}
	}
	return true
}

// serving is the version that answers the queries of this binary's
// version, and whether this binary's is ready, for Stats.
func (h *ViewHost) serving() (version int, ready bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	def, _ := h.pickLocked(h.view.def.Columns)
	return def.Version, h.ready
}

func (h *ViewHost) isReady() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.ready
}

// start runs the view's updater and, while an older version answers, the
// check that switches to this one once it is ready.
func (h *ViewHost) start(s *consumerSet) {
	def := h.view.def
	runner := s.newRunner(ConsumerConfig{Name: viewConsumerName(def), EntityType: def.EntityType, Handle: h.update})
	runner.onStart = h.rows.reset
	// The first time the updater has caught up with the feed, the version
	// is complete: it may answer, and the versions before it may go.
	var once sync.Once
	runner.caughtUp = func() {
		if h.isReady() {
			return
		}
		once.Do(func() {
			h.done.Add(1)
			go func() {
				defer h.done.Done()
				h.markReady(s.ctx)
			}()
		})
	}
	s.mu.Lock()
	s.runLocked(runner)
	s.mu.Unlock()
	h.done.Add(1)
	go func() {
		defer h.done.Done()
		h.watchVersions(s.ctx)
	}()
	if h.isReady() {
		// Versions this one replaced may be left by a node that died
		// before it dropped them.
		h.done.Add(1)
		go func() {
			defer h.done.Done()
			h.dropReplaced(s.ctx)
		}()
	}
}

// markReady records that this version caught up, serves it, and drops
// the versions before it after viewDropDelay.
func (h *ViewHost) markReady(ctx context.Context) {
	def := h.view.def
	retry := consumerRetryFirst
	for {
		cctx, cancel := context.WithTimeout(ctx, h.rt.storeTimeout())
		err := h.rt.store.MarkViewReady(cctx, def)
		cancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return
		}
		h.rt.log.Warn("recording that a view is built failed; retrying", "view", def.Name, "version", def.Version, "error", err)
		if !sleep(ctx, jitter(retry)) {
			return
		}
		retry = min(2*retry, consumerRetryMax)
	}
	h.mu.Lock()
	h.ready = true
	h.mu.Unlock()
	h.rt.log.Info("view built", "view", def.Name, "version", def.Version)
	h.dropReplaced(ctx)
}

// dropReplaced drops the versions before this binary's, viewDropDelay
// after it was found complete: nodes of a rolling deploy still on an
// older binary answer from them meanwhile.
func (h *ViewHost) dropReplaced(ctx context.Context) {
	def := h.view.def
	if !sleep(ctx, viewDropDelay) {
		return
	}
	cctx, cancel := context.WithTimeout(ctx, h.rt.storeTimeout())
	defer cancel()
	versions, err := h.rt.store.ViewVersions(cctx, def.Name)
	if err != nil {
		h.rt.log.Warn("listing a view's old versions failed; they stay until this server starts again", "view", def.Name, "error", err)
		return
	}
	for _, v := range versions {
		if v.Def.Version >= def.Version {
			continue
		}
		if err := h.rt.store.DropView(cctx, v.Def); err != nil {
			h.rt.log.Warn("dropping a view's old version failed", "view", def.Name, "version", v.Def.Version, "error", err)
			continue
		}
		h.rt.log.Info("view version dropped: its successor is built", "view", def.Name, "version", v.Def.Version)
	}
}

// watchVersions keeps what this node knows of the view's versions up to
// date: this binary's version may be built on another node, and during a
// rolling deploy a newer binary's may be the one to answer a query.
func (h *ViewHost) watchVersions(ctx context.Context) {
	for {
		wait := viewVersionCheck
		if h.isReady() {
			wait = viewVersionPoll
		}
		if !sleep(ctx, wait) {
			return
		}
		cctx, cancel := context.WithTimeout(ctx, h.rt.storeTimeout())
		err := h.refresh(cctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			h.rt.log.Warn("checking a view's versions failed; retrying", "view", h.view.cfg.Name, "error", err)
		}
	}
}

// storeTimeout bounds one store call off the command path.
func (r *Runtime) storeTimeout() time.Duration {
	if r.cfg.commitTimeout > 0 {
		return r.cfg.commitTimeout
	}
	return defaultStoreTimeout
}

// update applies one source event to its entity's row. A repeat (an
// event at or below the row's seq) changes nothing.
func (h *ViewHost) update(ec *EventContext, eventType string, payload []byte) error {
	if eventType == callEventType {
		return nil // a call the entity sent: not the entity's own event
	}
	def := h.view.def
	ctx, cancel := context.WithTimeout(ec.ctx, h.rt.storeTimeout())
	defer cancel()
	cur, exists := h.rows.get(ec.entityID)
	if !exists {
		rows, err := h.rt.store.LoadViewRows(ctx, def, []string{ec.entityID})
		if err != nil {
			return fmt.Errorf("view %q: load the row of %s: %w", def.Name, ec.entityID, err)
		}
		cur, exists = rows[ec.entityID]
	}
	if exists && cur.Seq >= ec.seq {
		h.skipped.Add(1)
		return nil
	}
	row := h.view.cfg.NewRow()
	if exists && cur.Row != nil {
		if err := proto.Unmarshal(cur.Row, row); err != nil {
			return fmt.Errorf("view %q: decode the row of %s: %w", def.Name, ec.entityID, err)
		}
	}
	uc := &ViewUpdateContext{ctx: ec.ctx, entityID: ec.entityID, seq: ec.seq, exists: exists && cur.Row != nil}
	out, err := h.view.cfg.Update(uc, row, eventType, payload)
	if err != nil {
		return err
	}
	if out != nil && !uc.exists && proto.Size(out) == 0 {
		// An event that made no row (one the view has no handler for, or
		// one that leaves an entity's state empty): nothing to store, and
		// no empty row for queries to find.
		return nil
	}
	next := store.ViewRow{EntityID: ec.entityID, Seq: ec.seq}
	if out != nil {
		if next.Row, err = (proto.MarshalOptions{Deterministic: true}).Marshal(out); err != nil {
			return fmt.Errorf("view %q: encode the row of %s: %w", def.Name, ec.entityID, err)
		}
		next.Columns = viewquery.Extract(def.Columns, out.ProtoReflect())
	}
	if err := h.writer.write(ctx, next); err != nil {
		// Written or not: the next attempt asks the store.
		h.rows.forget(ec.entityID)
		return fmt.Errorf("view %q: store the row of %s: %w", def.Name, ec.entityID, err)
	}
	h.rows.put(next)
	h.updated.Add(1)
	return nil
}

// viewRowWriter writes the rows of a view's updater in batches: the
// updater handles up to consumerParallelism entities at once, and the
// rows they produce while a write is in flight go together in the next
// one, one transaction (one fsync on the embedded store, one round trip
// on Postgres) for all of them. A batch holds at most one row per entity:
// the updater handles an entity's events one after another, each waiting
// for its row's write. A batch the store refuses is written again a row at
// a time, so that one bad row (a value too long to index) fails alone.
type viewRowWriter struct {
	h        *ViewHost
	mu       sync.Mutex
	pending  []pendingViewRow
	flushing bool
}

type pendingViewRow struct {
	row  store.ViewRow
	done chan error
}

// write queues row and waits until it is written, or ctx ends (the row
// may then be written or not).
func (w *viewRowWriter) write(ctx context.Context, row store.ViewRow) error {
	p := pendingViewRow{row: row, done: make(chan error, 1)}
	w.mu.Lock()
	w.pending = append(w.pending, p)
	if !w.flushing {
		w.flushing = true
		go w.flush()
	}
	w.mu.Unlock()
	select {
	case err := <-p.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// flush writes what is pending, batch after batch, until nothing is.
func (w *viewRowWriter) flush() {
	for {
		w.mu.Lock()
		batch := w.pending
		w.pending = nil
		if len(batch) == 0 {
			w.flushing = false
			w.mu.Unlock()
			return
		}
		w.mu.Unlock()
		rows := make([]store.ViewRow, len(batch))
		for i, p := range batch {
			rows[i] = p.row
		}
		err := w.store(rows)
		if err != nil && len(batch) > 1 {
			for _, p := range batch {
				p.done <- w.store([]store.ViewRow{p.row})
			}
			continue
		}
		for _, p := range batch {
			p.done <- err
		}
	}
}

func (w *viewRowWriter) store(rows []store.ViewRow) error {
	ctx, cancel := context.WithTimeout(context.Background(), w.h.rt.storeTimeout())
	defer cancel()
	return w.h.rt.store.UpdateViewRows(ctx, w.h.view.def, rows)
}

// viewRowCache keeps the rows a view's updater wrote last, so that the
// next event of an entity is applied without reading its row back: one
// store call per event instead of two. While its updater runs, it is the
// only writer of its rows, so what it wrote is what the store holds; it
// starts empty each time the updater starts (in a cluster, the updater
// may have run on another node meanwhile). Another writer can only be a
// node that lost the updater's lease finishing an event in flight: it
// writes what this node computes from the same row and event, since an
// updater must give the same result for both each time.
type viewRowCache struct {
	mu   sync.Mutex
	rows map[string]store.ViewRow // without Columns: not needed again
}

// maxCachedViewRows bounds a view's cache; past it, a random tenth of
// the entries go (Go's map order).
const maxCachedViewRows = 10_000

func (c *viewRowCache) get(id string) (store.ViewRow, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	r, ok := c.rows[id]
	return r, ok
}

func (c *viewRowCache) put(r store.ViewRow) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rows == nil {
		c.rows = map[string]store.ViewRow{}
	}
	if len(c.rows) >= maxCachedViewRows {
		n := maxCachedViewRows / 10
		for id := range c.rows {
			delete(c.rows, id)
			if n--; n == 0 {
				break
			}
		}
	}
	c.rows[r.EntityID] = store.ViewRow{EntityID: r.EntityID, Seq: r.Seq, Row: r.Row}
}

func (c *viewRowCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.rows, id)
}

// reset empties the cache: the updater (re)starts.
func (c *viewRowCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rows = nil
}

// ViewUpdateContext is what a view's update handler gets with each event.
type ViewUpdateContext struct {
	ctx      context.Context
	entityID string
	seq      int64
	exists   bool
}

// Context returns the context of the update; it ends when the runtime
// stops.
func (c *ViewUpdateContext) Context() context.Context { return c.ctx }

// EntityID returns the ID of the source entity whose event this is: the
// row's key.
func (c *ViewUpdateContext) EntityID() string { return c.entityID }

// Seq returns the event's position in its entity's history, from 1.
func (c *ViewUpdateContext) Seq() int64 { return c.seq }

// Exists reports whether the entity had a row before this event.
func (c *ViewUpdateContext) Exists() bool { return c.exists }

// QueryView answers a unary query RPC: the query at index query of the
// view's configuration, bound to req.
func QueryView[Req, Resp proto.Message](ctx context.Context, h *ViewHost, query int, req Req) (Resp, error) {
	var zero Resp
	q, err := h.query(query)
	if err != nil {
		return zero, err
	}
	if q.rows == nil {
		return zero, status.Errorf(codes.Internal, "view %q: %s streams its rows; regenerate the code with protoc-gen-statefun", h.view.cfg.Name, q.cfg.Method)
	}
	def, err := h.servingFor(q)
	if err != nil {
		return zero, err
	}
	rm := req.ProtoReflect()
	limit, err := q.query.Limit(rm)
	if err != nil {
		return zero, h.bindError(q, err)
	}
	paged := q.nextPageToken != nil
	page := limit
	if q.pageSize != nil {
		switch n := int(rm.Get(q.pageSize).Int()); {
		case n < 0:
			return zero, status.Errorf(codes.InvalidArgument, "page_size is %d; ask for a positive page size, or 0 for the default (%d)", n, defaultViewPage)
		case n > 0 && (page == 0 || n < page):
			page = n
		}
	}
	if !paged && limit > maxViewPage {
		return zero, status.Errorf(codes.FailedPrecondition, "view %q, %s: a LIMIT of %d is over the %d rows one answer holds; page the query (page_token and next_page_token fields) or make the RPC server streaming", h.view.cfg.Name, q.cfg.Method, limit, maxViewPage)
	}
	// Without a LIMIT and without paging, every matching row is the
	// answer: more than maxViewPage of them is refused rather than cut.
	whole := page == 0 && !paged
	switch {
	case page == 0 && paged:
		page = defaultViewPage
	case page == 0:
		page = maxViewPage
	}
	page = min(page, maxViewPage)
	fetch := page
	if paged || whole {
		fetch++ // one more tells whether there is more
	}
	sq, err := q.query.Bind(def, rm, fetch, nil)
	if err != nil {
		return zero, h.bindError(q, err)
	}
	if q.pageToken != nil {
		if tok := rm.Get(q.pageToken).String(); tok != "" {
			if sq.After, err = decodeViewCursor(def, q, sq.Order, tok); err != nil {
				return zero, err
			}
		}
	}
	resp := zero.ProtoReflect().New()
	list := resp.Mutable(q.rows).List()
	var (
		last   proto.Message
		lastID string
		more   bool
	)
	err = h.rt.store.QueryView(ctx, def, sq, func(r store.ViewRow) error {
		if list.Len() == page {
			more = true
			return errStopRows
		}
		el := list.NewElement()
		if err := proto.Unmarshal(r.Row, el.Message().Interface()); err != nil {
			return status.Errorf(codes.Internal, "view %q: decode the row of %s: %v", h.view.cfg.Name, r.EntityID, err)
		}
		list.Append(el)
		last, lastID = el.Message().Interface(), r.EntityID
		return nil
	})
	if err != nil && !errors.Is(err, errStopRows) {
		return zero, viewStoreError(ctx, h.view.cfg.Name, err)
	}
	switch {
	case more && whole:
		return zero, status.Errorf(codes.FailedPrecondition, "view %q, %s: more than %d rows match; add a LIMIT to the query, page it (page_token and next_page_token fields), or make the RPC server streaming", h.view.cfg.Name, q.cfg.Method, maxViewPage)
	case more:
		resp.Set(q.nextPageToken, protoreflect.ValueOfString(encodeViewCursor(def, q, sq.Order, last, lastID)))
	}
	return resp.Interface().(Resp), nil
}

// StreamView answers a server-streaming query RPC: send is called with
// each matching row, in the query's order. The rows are read a chunk at a
// time, each chunk after the last row sent, so a large answer holds
// little memory and no long-running store query.
func StreamView[Req, Row proto.Message](ctx context.Context, h *ViewHost, query int, req Req, send func(Row) error) error {
	q, err := h.query(query)
	if err != nil {
		return err
	}
	def, err := h.servingFor(q)
	if err != nil {
		return err
	}
	rm := req.ProtoReflect()
	limit, err := q.query.Limit(rm)
	if err != nil {
		return h.bindError(q, err)
	}
	if limit == 0 {
		limit = math.MaxInt
	}
	var after *store.ViewCursor
	for sent := 0; sent < limit; {
		chunk := min(viewStreamChunk, limit-sent)
		sq, err := q.query.Bind(def, rm, chunk, after)
		if err != nil {
			return h.bindError(q, err)
		}
		var rows []store.ViewRow
		if err := h.rt.store.QueryView(ctx, def, sq, func(r store.ViewRow) error {
			rows = append(rows, r)
			return nil
		}); err != nil {
			return viewStoreError(ctx, h.view.cfg.Name, err)
		}
		var zero Row
		for _, r := range rows {
			row := zero.ProtoReflect().New().Interface().(Row)
			if err := proto.Unmarshal(r.Row, row); err != nil {
				return status.Errorf(codes.Internal, "view %q: decode the row of %s: %v", h.view.cfg.Name, r.EntityID, err)
			}
			if err := send(row); err != nil {
				return err
			}
			after = cursorOf(def, sq.Order, row, r.EntityID)
		}
		sent += len(rows)
		if len(rows) < chunk {
			break
		}
	}
	return nil
}

var errStopRows = errors.New("enough rows")

// bindError is the status of a request the query could not be bound to:
// the caller's fault (a negative limit, a token of another query), or
// the view's (a stored version without a column the query needs).
func (h *ViewHost) bindError(q *viewQuery, err error) error {
	code := codes.FailedPrecondition
	if errors.Is(err, viewquery.ErrInvalidArgument) {
		code = codes.InvalidArgument
	}
	return status.Errorf(code, "view %q, %s: %v", h.view.cfg.Name, q.cfg.Method, err)
}

func (h *ViewHost) query(i int) (*viewQuery, error) {
	if i < 0 || i >= len(h.view.queries) {
		return nil, status.Errorf(codes.Internal, "view %q has no query %d; regenerate the code with protoc-gen-statefun", h.view.cfg.Name, i)
	}
	return h.view.queries[i], nil
}

// viewStoreError is the status of a query the store failed.
func viewStoreError(ctx context.Context, view string, err error) error {
	if _, ok := status.FromError(err); ok {
		return err
	}
	if ctx.Err() != nil {
		return status.FromContextError(ctx.Err()).Err()
	}
	return status.Errorf(codes.Unavailable, "view %q: the store did not answer the query: %v; retry the call", view, err)
}

// cursorOf is the cursor after row: its values of the order columns.
func cursorOf(def store.ViewDef, order []store.ViewOrder, row proto.Message, entityID string) *store.ViewCursor {
	cols := make([]store.ViewColumn, len(order))
	for i, o := range order {
		cols[i] = def.Columns[o.Column]
	}
	return &store.ViewCursor{Values: viewquery.Extract(cols, row.ProtoReflect()), EntityID: entityID}
}

// A page token is the cursor after a page's last row, with a fingerprint
// of the view version and query it belongs to: a token is refused by any
// other query, and by the same query once the version it paged changed.
//
//	message PageToken { fixed64 fingerprint = 1; string entity_id = 2; repeated bytes values = 3; }
//
// Each value is encoded by its column's kind.
func encodeViewCursor(def store.ViewDef, q *viewQuery, order []store.ViewOrder, last proto.Message, lastID string) string {
	c := cursorOf(def, order, last, lastID)
	b := protowire.AppendTag(nil, 1, protowire.Fixed64Type)
	b = protowire.AppendFixed64(b, viewFingerprint(def, q))
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, c.EntityID)
	for _, v := range c.Values {
		var e []byte
		switch v := v.(type) {
		case string:
			e = []byte(v)
		case []byte:
			e = v
		case int64:
			e = protowire.AppendVarint(nil, protowire.EncodeZigZag(v))
		case float64:
			e = protowire.AppendFixed64(nil, math.Float64bits(v))
		case bool:
			e = protowire.AppendVarint(nil, protowire.EncodeBool(v))
		}
		b = protowire.AppendTag(b, 3, protowire.BytesType)
		b = protowire.AppendBytes(b, e)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeViewCursor(def store.ViewDef, q *viewQuery, order []store.ViewOrder, tok string) (*store.ViewCursor, error) {
	bad := func(why string) error {
		return status.Errorf(codes.InvalidArgument, "page_token is not a token of this query (%s); pass the next_page_token of the previous page of the same query, or none for the first page", why)
	}
	b, err := base64.RawURLEncoding.DecodeString(tok)
	if err != nil {
		return nil, bad("not base64url")
	}
	c := &store.ViewCursor{}
	var fingerprint uint64
	var raw [][]byte
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, bad("malformed")
		}
		b = b[n:]
		switch {
		case num == 1 && typ == protowire.Fixed64Type:
			fingerprint, n = protowire.ConsumeFixed64(b)
		case num == 2 && typ == protowire.BytesType:
			c.EntityID, n = protowire.ConsumeString(b)
		case num == 3 && typ == protowire.BytesType:
			var v []byte
			v, n = protowire.ConsumeBytes(b)
			raw = append(raw, v)
		default:
			return nil, bad("malformed")
		}
		if n < 0 {
			return nil, bad("malformed")
		}
		b = b[n:]
	}
	if fingerprint != viewFingerprint(def, q) {
		// A token of a version replaced since is no mistake of the
		// caller's: the answer is to start over, not to give up.
		return nil, status.Error(codes.FailedPrecondition, "page_token pages another query, or a version of the view that was replaced since; start again from the first page")
	}
	if len(raw) != len(order) {
		return nil, bad("malformed")
	}
	for i, o := range order {
		v := raw[i]
		switch def.Columns[o.Column].Kind {
		case store.ViewString:
			c.Values = append(c.Values, string(v))
		case store.ViewBytes:
			c.Values = append(c.Values, v)
		case store.ViewInt:
			x, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return nil, bad("malformed")
			}
			c.Values = append(c.Values, protowire.DecodeZigZag(x))
		case store.ViewFloat:
			x, n := protowire.ConsumeFixed64(v)
			if n < 0 {
				return nil, bad("malformed")
			}
			c.Values = append(c.Values, math.Float64frombits(x))
		case store.ViewBool:
			x, n := protowire.ConsumeVarint(v)
			if n < 0 {
				return nil, bad("malformed")
			}
			c.Values = append(c.Values, protowire.DecodeBool(x))
		}
	}
	return c, nil
}

// viewFingerprint is a hash of what a page token is valid for.
func viewFingerprint(def store.ViewDef, q *viewQuery) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%d:%s%d:%d:%s%d:%s", len(def.Name), def.Name, def.Version, len(q.cfg.Method), q.cfg.Method, len(q.cfg.Query), q.cfg.Query)
	return h.Sum64()
}

// ViewStats describes one view on this node.
type ViewStats struct {
	Name string
	// Version is this binary's version; Serving, the version that
	// answers queries (an older one while this one is being built).
	Version, Serving int
	// Ready reports whether this binary's version was ever complete.
	Ready bool
	// Updated counts rows written by this node's updater; Skipped, events
	// it had applied before (repeats after a restart).
	Updated, Skipped uint64
}

func (h *ViewHost) stats() ViewStats {
	serving, ready := h.serving()
	return ViewStats{
		Name: h.view.cfg.Name, Version: h.view.def.Version, Serving: serving,
		Ready: ready, Updated: h.updated.Load(), Skipped: h.skipped.Load(),
	}
}

// shutdown stops the view's background work.
func (vs *viewSet) shutdown(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		for _, h := range vs.hosts {
			h.done.Wait()
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("stopping views: %w", ctx.Err())
	}
}

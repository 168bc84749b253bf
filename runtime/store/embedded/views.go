package embedded

// # Views
//
// The rows of views live in the file, in a bucket created by the first
// EnsureView (so the file's format, and what an older binary may open,
// does not change: an older binary ignores the bucket, and the views'
// updaters catch up from their consumer positions when a newer one
// returns):
//
//	views            one nested bucket per view version, named
//	                 len‖name‖version (big-endian uint64, so a
//	                 view's versions sort oldest first)
//	  "def"          → JSON {entity_type, columns, ready}
//	  rows           'r'‖entity ID → seq‖live‖len‖row‖columns
//
// seq is a big-endian uint64; live is 1 for a row and 0 for a tombstone,
// which stops there. Columns follow in the ViewDef's order: a string or
// bytes value is len‖bytes, an int a big-endian uint64, a float its
// IEEE bits as a big-endian uint64, a bool one byte; a repeated column is
// its element count, then each element. Every len and count is a uvarint.
//
// Queries are served from memory: the first use of a version after Open
// reads its rows, without their payloads, into a viewmatch.Table, which
// keeps a sorted index of every plain column and, for a repeated column,
// a map from each element's value to the live rows that hold it. A
// query reads the narrowest of the ranges and equalities its condition
// implies, or walks the index of its first order column and stops once
// it has its page (see viewmatch's plan), and keeps only the best Limit
// rows as it goes; then it reads those rows' payloads from the file.
//
// A version's table and its bucket change together: UpdateViewRows holds
// the version's lock across its write transaction and the change to the
// table, and a query holds it (shared) from reading the table to reading
// the payloads, so a page never pairs a row with another seq's payload.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"sync"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/internal/viewmatch"
)

var _ store.Views = (*Store)(nil)

var (
	viewsBucket    = []byte("views")
	viewDefKey     = []byte("def")
	viewRowsBucket = []byte("rows")
)

// viewBucketName is len‖name‖version: prefix-free in the name, so the
// versions of one view are exactly the buckets that start with
// len‖name.
func viewBucketName(def store.ViewDef) []byte {
	k := viewNamePrefix(def.Name)
	return binary.BigEndian.AppendUint64(k, uint64(def.Version))
}

func viewNamePrefix(name string) []byte {
	k := binary.AppendUvarint(nil, uint64(len(name)))
	return append(k, name...)
}

// viewRowKey is 'r'‖ID: bbolt keys cannot be empty, and an ID can.
func viewRowKey(id string) []byte { return append([]byte{'r'}, id...) }

// storedViewDef is the "def" record of a version.
type storedViewDef struct {
	EntityType string          `json:"entity_type"`
	Columns    []storedViewCol `json:"columns"`
	Ready      bool            `json:"ready"`
}

type storedViewCol struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Repeated bool   `json:"repeated"`
}

func encodeViewDef(def store.ViewDef, ready bool) ([]byte, error) {
	d := storedViewDef{EntityType: def.EntityType, Ready: ready, Columns: make([]storedViewCol, len(def.Columns))}
	for i, c := range def.Columns {
		d.Columns[i] = storedViewCol{Name: c.Name, Kind: c.Kind.String(), Repeated: c.Repeated}
	}
	return json.Marshal(d)
}

func decodeViewDef(name string, version int, raw []byte) (store.ViewDef, bool, error) {
	var d storedViewDef
	if err := json.Unmarshal(raw, &d); err != nil {
		return store.ViewDef{}, false, fmt.Errorf("the record of view %q version %d is damaged (%w); restore the data directory from a backup", name, version, err)
	}
	def := store.ViewDef{Name: name, Version: version, EntityType: d.EntityType, Columns: make([]store.ViewColumn, len(d.Columns))}
	for i, c := range d.Columns {
		kind := store.ViewKind(0)
		for k := store.ViewString; k <= store.ViewBytes; k++ {
			if k.String() == c.Kind {
				kind = k
			}
		}
		if kind == 0 {
			return store.ViewDef{}, false, fmt.Errorf("view %q version %d: column %q has kind %q, written by a newer statefun; upgrade statefun", name, version, c.Name, c.Kind)
		}
		def.Columns[i] = store.ViewColumn{Name: c.Name, Kind: kind, Repeated: c.Repeated}
	}
	return def, d.Ready, nil
}

// encodeViewRow is the value of a row's key (see the layout above).
func encodeViewRow(def store.ViewDef, r store.ViewRow) []byte {
	v := binary.BigEndian.AppendUint64(nil, uint64(r.Seq))
	if r.Row == nil {
		return append(v, 0)
	}
	v = append(v, 1)
	v = binary.AppendUvarint(v, uint64(len(r.Row)))
	v = append(v, r.Row...)
	for i, c := range def.Columns {
		if c.Repeated {
			n := 0
			viewmatch.Elements(r.Columns[i], func(any) { n++ })
			v = binary.AppendUvarint(v, uint64(n))
		}
		viewmatch.Elements(r.Columns[i], func(e any) { v = appendViewValue(v, e) })
	}
	return v
}

func appendViewValue(v []byte, e any) []byte {
	switch e := e.(type) {
	case string:
		v = binary.AppendUvarint(v, uint64(len(e)))
		return append(v, e...)
	case []byte:
		v = binary.AppendUvarint(v, uint64(len(e)))
		return append(v, e...)
	case int64:
		return binary.BigEndian.AppendUint64(v, uint64(e))
	case float64:
		return binary.BigEndian.AppendUint64(v, math.Float64bits(e))
	case bool:
		if e {
			return append(v, 1)
		}
		return append(v, 0)
	}
	return v
}

// viewRowDecoder reads a row value, copying out of bbolt's memory.
type viewRowDecoder struct {
	buf []byte
	bad bool
}

func (d *viewRowDecoder) uvarint() uint64 {
	n, size := binary.Uvarint(d.buf)
	if size <= 0 {
		d.bad = true
		return 0
	}
	d.buf = d.buf[size:]
	return n
}

func (d *viewRowDecoder) bytes() []byte {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.buf)) {
		d.bad = true
		return nil
	}
	b := bytes.Clone(d.buf[:n])
	if b == nil {
		b = []byte{}
	}
	d.buf = d.buf[n:]
	return b
}

// string reads a len‖bytes value as a string: one copy, not the two of
// string(d.bytes()).
func (d *viewRowDecoder) string() string {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.buf)) {
		d.bad = true
		return ""
	}
	s := string(d.buf[:n])
	d.buf = d.buf[n:]
	return s
}

func (d *viewRowDecoder) fixed(n int) []byte {
	if d.bad || len(d.buf) < n {
		d.bad = true
		return make([]byte, n)
	}
	b := d.buf[:n]
	d.buf = d.buf[n:]
	return b
}

func (d *viewRowDecoder) value(k store.ViewKind) any {
	switch k {
	case store.ViewString:
		return d.string()
	case store.ViewBytes:
		return d.bytes()
	case store.ViewInt:
		return int64(binary.BigEndian.Uint64(d.fixed(8)))
	case store.ViewFloat:
		return math.Float64frombits(binary.BigEndian.Uint64(d.fixed(8)))
	case store.ViewBool:
		return d.fixed(1)[0] == 1
	}
	d.bad = true
	return nil
}

func (d *viewRowDecoder) list(k store.ViewKind) any {
	n := d.uvarint()
	if d.bad || n > uint64(len(d.buf)) { // every element takes a byte at least
		d.bad = true
		return nil
	}
	switch k {
	case store.ViewString:
		return decodeList[string](d, k, n)
	case store.ViewBytes:
		return decodeList[[]byte](d, k, n)
	case store.ViewInt:
		return decodeList[int64](d, k, n)
	case store.ViewFloat:
		return decodeList[float64](d, k, n)
	case store.ViewBool:
		return decodeList[bool](d, k, n)
	}
	d.bad = true
	return nil
}

func decodeList[T any](d *viewRowDecoder, k store.ViewKind, n uint64) []T {
	list := make([]T, 0, n)
	for range n {
		v, _ := d.value(k).(T)
		list = append(list, v)
	}
	return list
}

// decodeViewRow decodes a stored row; withRow says whether to copy its
// payload out (the in-memory table does without).
func decodeViewRow(def store.ViewDef, id string, v []byte, withRow bool) (r store.ViewRow, live bool, err error) {
	d := &viewRowDecoder{buf: v}
	r = store.ViewRow{EntityID: id, Seq: int64(binary.BigEndian.Uint64(d.fixed(8)))}
	live = d.fixed(1)[0] == 1
	if live {
		n := d.uvarint()
		if d.bad || n > uint64(len(d.buf)) {
			d.bad = true
		} else {
			if withRow {
				r.Row = bytes.Clone(d.buf[:n])
				if r.Row == nil {
					r.Row = []byte{}
				}
			}
			d.buf = d.buf[n:]
		}
		r.Columns = make([]any, len(def.Columns))
		for i, c := range def.Columns {
			if c.Repeated {
				r.Columns[i] = d.list(c.Kind)
			} else {
				r.Columns[i] = d.value(c.Kind)
			}
		}
	}
	if d.bad || len(d.buf) != 0 {
		return store.ViewRow{}, false, fmt.Errorf("the row of %q in view %q version %d is damaged; restore the data directory from a backup", id, def.Name, def.Version)
	}
	return r, live, nil
}

// viewBuckets returns the version's bucket and its rows, or an error
// naming the cure when it does not exist.
func viewBuckets(tx *bolt.Tx, def store.ViewDef) (version, rows *bolt.Bucket, err error) {
	if views := tx.Bucket(viewsBucket); views != nil {
		version = views.Bucket(viewBucketName(def))
	}
	if version == nil {
		return nil, nil, fmt.Errorf("view %q version %d does not exist; EnsureView creates it", def.Name, def.Version)
	}
	return version, version.Bucket(viewRowsBucket), nil
}

// loadedView is a version's rows in memory, loaded on first use.
type loadedView struct {
	mu      sync.RWMutex
	loaded  atomic.Bool
	dropped bool // by DropView: the next user looks the version up again
	table   *viewmatch.Table
}

type viewKey struct {
	name    string
	version int
}

// storeViews are a store's loaded views.
type storeViews struct {
	mu    sync.Mutex
	views map[viewKey]*loadedView
}

func (s *Store) loadedViews() *storeViews { return &s.views }

// lockView returns def's version loaded and locked: exclusively when
// write, shared otherwise. The caller unlocks it.
func (s *Store) lockView(def store.ViewDef, write bool) (*loadedView, error) {
	sv := s.loadedViews()
	for {
		sv.mu.Lock()
		v := sv.views[viewKey{def.Name, def.Version}]
		if v == nil {
			v = &loadedView{}
			sv.views[viewKey{def.Name, def.Version}] = v
		}
		sv.mu.Unlock()
		if !v.loaded.Load() {
			v.mu.Lock()
			if !v.dropped && !v.loaded.Load() {
				if err := s.loadView(v, def); err != nil {
					v.dropped = true // a failed load is retried by the next caller
					v.mu.Unlock()
					sv.forget(def, v)
					return nil, err
				}
			}
			v.mu.Unlock()
		}
		if write {
			v.mu.Lock()
		} else {
			v.mu.RLock()
		}
		if !v.dropped {
			return v, nil
		}
		if write {
			v.mu.Unlock()
		} else {
			v.mu.RUnlock()
		}
	}
}

func (sv *storeViews) forget(def store.ViewDef, v *loadedView) {
	sv.mu.Lock()
	defer sv.mu.Unlock()
	if sv.views[viewKey{def.Name, def.Version}] == v {
		delete(sv.views, viewKey{def.Name, def.Version})
	}
}

// loadView reads a version's rows into memory. The caller holds v.mu.
func (s *Store) loadView(v *loadedView, def store.ViewDef) error {
	err := s.view(func(tx *bolt.Tx) error {
		version, rows, err := viewBuckets(tx, def)
		if err != nil {
			return err
		}
		stored, _, err := decodeViewDef(def.Name, def.Version, version.Get(viewDefKey))
		if err != nil {
			return err
		}
		table := viewmatch.NewTable(stored)
		err = rows.ForEach(func(k, val []byte) error {
			id := string(k[1:])
			r, live, err := decodeViewRow(stored, id, val, false)
			if err != nil {
				return err
			}
			table.Load(id, r.Seq, live, r.Columns) // the table keeps r.Columns
			return nil
		})
		if err != nil {
			return err
		}
		v.table = table
		return nil
	})
	if err != nil {
		return s.txError(err, func() string { return fmt.Sprintf("load view %q version %d", def.Name, def.Version) })
	}
	v.loaded.Store(true)
	return nil
}

// EnsureView implements store.Views.
func (s *Store) EnsureView(ctx context.Context, def store.ViewDef) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := viewmatch.CheckDef(def); err != nil {
		return err
	}
	record, err := encodeViewDef(def, false)
	if err != nil {
		return err
	}
	err = s.update(func(tx *bolt.Tx) error {
		views, err := tx.CreateBucketIfNotExists(viewsBucket)
		if err != nil {
			return err
		}
		if version := views.Bucket(viewBucketName(def)); version != nil {
			stored, _, err := decodeViewDef(def.Name, def.Version, version.Get(viewDefKey))
			if err != nil {
				return err
			}
			return viewmatch.SameDef(stored, def)
		}
		version, err := views.CreateBucket(viewBucketName(def))
		if err != nil {
			return err
		}
		if _, err := version.CreateBucket(viewRowsBucket); err != nil {
			return err
		}
		return version.Put(viewDefKey, record)
	})
	return s.txError(err, func() string { return fmt.Sprintf("ensure view %q version %d", def.Name, def.Version) })
}

// ViewVersions implements store.Views.
func (s *Store) ViewVersions(ctx context.Context, name string) ([]store.ViewVersion, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	var out []store.ViewVersion
	prefix := viewNamePrefix(name)
	err := s.view(func(tx *bolt.Tx) error {
		views := tx.Bucket(viewsBucket)
		if views == nil {
			return nil
		}
		c := views.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			if len(k) != len(prefix)+8 {
				continue
			}
			version := views.Bucket(k)
			if version == nil {
				continue
			}
			n := int(binary.BigEndian.Uint64(k[len(prefix):]))
			def, ready, err := decodeViewDef(name, n, version.Get(viewDefKey))
			if err != nil {
				return err
			}
			out = append(out, store.ViewVersion{Def: def, Ready: ready})
		}
		return nil
	})
	if err := s.txError(err, func() string { return fmt.Sprintf("read the versions of view %q", name) }); err != nil {
		return nil, err
	}
	return out, nil
}

// MarkViewReady implements store.Views.
func (s *Store) MarkViewReady(ctx context.Context, def store.ViewDef) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		version, _, err := viewBuckets(tx, def)
		if err != nil {
			return err
		}
		stored, _, err := decodeViewDef(def.Name, def.Version, version.Get(viewDefKey))
		if err != nil {
			return err
		}
		record, err := encodeViewDef(stored, true)
		if err != nil {
			return err
		}
		return version.Put(viewDefKey, record)
	})
	return s.txError(err, func() string { return fmt.Sprintf("mark view %q version %d ready", def.Name, def.Version) })
}

// DropView implements store.Views.
func (s *Store) DropView(ctx context.Context, def store.ViewDef) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	// Take the version's entry, made here if no one has used the version
	// yet, so that a first use racing with the drop cannot load the rows
	// before the drop and keep them after: it waits for the lock, then
	// finds the entry dropped and looks the version up again. Holding the
	// lock also waits for the version's readers and writer.
	sv := s.loadedViews()
	sv.mu.Lock()
	v := sv.views[viewKey{def.Name, def.Version}]
	if v == nil {
		v = &loadedView{}
		sv.views[viewKey{def.Name, def.Version}] = v
	}
	sv.mu.Unlock()
	v.mu.Lock()
	defer v.mu.Unlock()
	err := s.update(func(tx *bolt.Tx) error {
		views := tx.Bucket(viewsBucket)
		if views == nil || views.Bucket(viewBucketName(def)) == nil {
			return nil
		}
		return views.DeleteBucket(viewBucketName(def))
	})
	if err := s.txError(err, func() string { return fmt.Sprintf("drop view %q version %d", def.Name, def.Version) }); err != nil {
		return err
	}
	v.dropped = true
	sv.forget(def, v)
	return nil
}

// LoadViewRows implements store.Views. It reads the file, not the table
// in memory: a transaction sees one version of every row.
func (s *Store) LoadViewRows(ctx context.Context, def store.ViewDef, ids []string) (map[string]store.ViewRow, error) {
	if err := s.check(ctx); err != nil {
		return nil, err
	}
	out := make(map[string]store.ViewRow, len(ids))
	err := s.view(func(tx *bolt.Tx) error {
		_, rows, err := viewBuckets(tx, def)
		if err != nil {
			return err
		}
		for _, id := range ids {
			val := rows.Get(viewRowKey(id))
			if val == nil {
				continue
			}
			r, _, err := decodeViewRow(def, id, val, true)
			if err != nil {
				return err
			}
			out[id] = r
		}
		return nil
	})
	if err := s.txError(err, func() string { return fmt.Sprintf("load rows of view %q version %d", def.Name, def.Version) }); err != nil {
		return nil, err
	}
	return out, nil
}

// maxViewRowKey is bbolt's key limit, which a row's key must keep to.
const maxViewRowKey = bolt.MaxKeySize

// UpdateViewRows implements store.Views: one write transaction, then
// the same rows into the table in memory.
func (s *Store) UpdateViewRows(ctx context.Context, def store.ViewDef, rows []store.ViewRow) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := viewmatch.CheckRows(def, rows); err != nil {
		return err
	}
	for _, r := range rows {
		if len(r.EntityID)+1 > maxViewRowKey {
			return fmt.Errorf("update view %q version %d: entity ID %.40q… takes %d bytes, over the embedded store's limit of %d; use shorter entity IDs", def.Name, def.Version, r.EntityID, len(r.EntityID), maxViewRowKey-1)
		}
	}
	if len(rows) == 0 {
		return nil
	}
	v, err := s.lockView(def, true)
	if err != nil {
		return err
	}
	defer v.mu.Unlock()
	var written []store.ViewRow
	err = s.update(func(tx *bolt.Tx) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		_, bucket, err := viewBuckets(tx, def)
		if err != nil {
			return err
		}
		written = written[:0]
		for _, r := range rows {
			if !v.table.Newer(r) {
				continue
			}
			if err := bucket.Put(viewRowKey(r.EntityID), encodeViewRow(def, r)); err != nil {
				return fmt.Errorf("write the row of %q: %w", r.EntityID, err)
			}
			written = append(written, r)
		}
		return nil
	})
	if err := s.txError(err, func() string {
		return fmt.Sprintf("update %d rows of view %q version %d", len(rows), def.Name, def.Version)
	}); err != nil {
		return err
	}
	for _, r := range written {
		v.table.Put(r, false)
	}
	return nil
}

// QueryView implements store.Views. fn runs after the version's lock and
// the read transaction are released, so that it may call the store.
func (s *Store) QueryView(ctx context.Context, def store.ViewDef, q store.ViewQuery, fn func(store.ViewRow) error) error {
	if err := s.check(ctx); err != nil {
		return err
	}
	if err := viewmatch.CheckQuery(def, q); err != nil {
		return err
	}
	v, err := s.lockView(def, false)
	if err != nil {
		return err
	}
	ids := v.table.QueryIDs(q)
	page := make([]store.ViewRow, len(ids))
	err = s.view(func(tx *bolt.Tx) error {
		_, rows, err := viewBuckets(tx, def)
		if err != nil {
			return err
		}
		for i, id := range ids {
			val := rows.Get(viewRowKey(id))
			if val == nil {
				return fmt.Errorf("the row of %q is in memory but not in the file", id)
			}
			full, _, err := decodeViewRow(def, id, val, true)
			if err != nil {
				return err
			}
			page[i] = full
		}
		return nil
	})
	v.mu.RUnlock()
	if err := s.txError(err, func() string { return fmt.Sprintf("query view %q version %d", def.Name, def.Version) }); err != nil {
		return err
	}
	for _, r := range page {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

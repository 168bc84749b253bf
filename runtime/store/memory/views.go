package memory

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/internal/viewmatch"
)

// viewVersion is one stored version of a view: its rows in a
// viewmatch.Table, which indexes every column and answers queries (the
// embedded store's planner: ranges, equalities and ordered walks).
type viewVersion struct {
	ready bool
	table *viewmatch.Table
}

type viewKey struct {
	name    string
	version int
}

// views returns the store's views. The caller holds s.mu.
func (s *Store) views() map[viewKey]*viewVersion {
	if s.viewVersions == nil {
		s.viewVersions = map[viewKey]*viewVersion{}
	}
	return s.viewVersions
}

// version returns the stored version of def, or an error naming the cure.
// The caller holds s.mu.
func (s *Store) version(def store.ViewDef) (*viewVersion, error) {
	if s.closed {
		return nil, store.ErrClosed
	}
	v, ok := s.views()[viewKey{def.Name, def.Version}]
	if !ok {
		return nil, fmt.Errorf("view %q version %d does not exist; EnsureView creates it", def.Name, def.Version)
	}
	return v, nil
}

// EnsureView implements store.Views.
func (s *Store) EnsureView(_ context.Context, def store.ViewDef) error {
	if err := viewmatch.CheckDef(def); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	views := s.views()
	if v, ok := views[viewKey{def.Name, def.Version}]; ok {
		return viewmatch.SameDef(v.table.Def, def)
	}
	def.Columns = slices.Clone(def.Columns)
	views[viewKey{def.Name, def.Version}] = &viewVersion{table: viewmatch.NewTable(def)}
	return nil
}

// ViewVersions implements store.Views.
func (s *Store) ViewVersions(_ context.Context, name string) ([]store.ViewVersion, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, store.ErrClosed
	}
	var out []store.ViewVersion
	for k, v := range s.views() {
		if k.name == name {
			def := v.table.Def
			def.Columns = slices.Clone(def.Columns)
			out = append(out, store.ViewVersion{Def: def, Ready: v.ready})
		}
	}
	slices.SortFunc(out, func(a, b store.ViewVersion) int { return cmp.Compare(a.Def.Version, b.Def.Version) })
	return out, nil
}

// MarkViewReady implements store.Views.
func (s *Store) MarkViewReady(_ context.Context, def store.ViewDef) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.version(def)
	if err != nil {
		return err
	}
	v.ready = true
	return nil
}

// DropView implements store.Views.
func (s *Store) DropView(_ context.Context, def store.ViewDef) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	delete(s.views(), viewKey{def.Name, def.Version})
	return nil
}

// LoadViewRows implements store.Views.
func (s *Store) LoadViewRows(_ context.Context, def store.ViewDef, ids []string) (map[string]store.ViewRow, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, err := s.version(def)
	if err != nil {
		return nil, err
	}
	out := make(map[string]store.ViewRow, len(ids))
	for _, id := range ids {
		if r, _, ok := v.table.Get(id); ok {
			out[id] = r
		}
	}
	return out, nil
}

// UpdateViewRows implements store.Views. The rows are checked before any
// is written, so a bad one writes nothing.
func (s *Store) UpdateViewRows(_ context.Context, def store.ViewDef, rows []store.ViewRow) error {
	if err := viewmatch.CheckRows(def, rows); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, err := s.version(def)
	if err != nil {
		return err
	}
	for _, r := range rows {
		v.table.Put(r, true)
	}
	return nil
}

// QueryView implements store.Views. fn runs without the store's lock, on
// copies, so that it may call the store.
func (s *Store) QueryView(ctx context.Context, def store.ViewDef, q store.ViewQuery, fn func(store.ViewRow) error) error {
	if err := viewmatch.CheckQuery(def, q); err != nil {
		return err
	}
	s.mu.RLock()
	v, err := s.version(def)
	if err != nil {
		s.mu.RUnlock()
		return err
	}
	rows := v.table.Query(q)
	s.mu.RUnlock()
	for _, r := range rows {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

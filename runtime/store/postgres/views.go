package postgres

// # Views
//
// Each version of a view is a table of its own in the store's schema,
// created by EnsureView and recorded in view_versions (migration 0008):
//
//	view_<name>_v<version>_<hash>  (entity_id) -> seq, row, c0, c1, ...
//
// entity_id is bytea, like the journal's IDs: an ID is any Go string.
// row is the row message, NULL for a tombstone. Column i of the view is
// ci, typed by its kind: string and bytes columns are bytea (compared
// byte by byte, as Go compares strings, and able to hold the NUL bytes
// and invalid UTF-8 a Go string may hold, which text cannot), int bigint,
// float double precision, bool boolean; a repeated column is an array of
// those, never NULL on a live row (an empty list is '{}'). A tombstone's
// columns are NULL.
//
// Every column has an index over the live rows only (WHERE row IS NOT
// NULL, which every query says): a btree on (ci, entity_id), which
// serves comparisons and an ORDER BY ci with the entity ID tie-break, or
// a GIN index on an array column, which serves equality (ci @> ARRAY[v]).
// The GIN indexes have fastupdate off: a view is read far more than it is
// written, and with it on every query reads the index's pending list
// whole until a vacuum merges it (and the planner, costing that, reads
// the table instead).
// The other comparisons of an array column are EXISTS over its unnested
// elements, a filter on the rows the rest of the query reads. A btree
// entry holds at most about 2.6 kB, so a longer value of a queried
// column (a whole description, say) is refused by UpdateViewRows with an
// error that says so: such fields belong in the row, not in a column.
//
// The table name is made of the view's name (lowercase letters, digits
// and underscores kept, the rest turned into underscores, cut short), its
// version, and a hash of the exact name, so that names differing only in
// punctuation or sharing a long prefix get tables of their own; it is
// always quoted.
//
// UpdateViewRows is one INSERT ... ON CONFLICT DO UPDATE ... WHERE
// excluded.seq > seq over unnest of one array per column, whatever the
// number of rows. Arrays of arrays (a repeated column of many rows) are
// not something unnest can take apart, so each repeated column is sent
// as the concatenation of every row's list with, per row, the bounds of
// its slice, and the statement slices it back out.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/statefun-go/statefun/runtime/store"
	"github.com/statefun-go/statefun/runtime/store/internal/viewmatch"
)

var _ store.Views = (*Store)(nil)

// viewTable returns the unquoted name of the table of def's version.
func viewTable(def store.ViewDef) string {
	var readable strings.Builder
	for _, r := range strings.ToLower(def.Name) {
		if readable.Len() == 24 {
			break
		}
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '_' {
			readable.WriteRune(r)
		} else {
			readable.WriteByte('_')
		}
	}
	h := fnv.New64a()
	h.Write([]byte(def.Name))
	// 48 bits of hash: at most 5+24+2+10+1+12 = 54 bytes, which leaves
	// room for the index suffixes within Postgres's 63.
	return fmt.Sprintf("view_%s_v%d_%012x", readable.String(), def.Version, h.Sum64()>>16)
}

func (s *Store) quotedViewTable(def store.ViewDef) string {
	return pgx.Identifier{s.schema, viewTable(def)}.Sanitize()
}

func columnName(i int) string { return "c" + strconv.Itoa(i) }

// sqlType is the type of a column's values (one element's, for a
// repeated column).
func sqlType(k store.ViewKind) string {
	switch k {
	case store.ViewInt:
		return "bigint"
	case store.ViewFloat:
		return "double precision"
	case store.ViewBool:
		return "boolean"
	}
	return "bytea" // string and bytes
}

func columnType(c store.ViewColumn) string {
	if c.Repeated {
		return sqlType(c.Kind) + "[]"
	}
	return sqlType(c.Kind)
}

// catalogColumn is a ViewColumn as view_versions.columns keeps it.
type catalogColumn struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Repeated bool   `json:"repeated"`
}

func catalogColumns(cs []store.ViewColumn) ([]byte, error) {
	out := make([]catalogColumn, len(cs))
	for i, c := range cs {
		out[i] = catalogColumn{Name: c.Name, Kind: c.Kind.String(), Repeated: c.Repeated}
	}
	return json.Marshal(out)
}

func parseCatalogColumns(raw []byte) ([]store.ViewColumn, error) {
	var cs []catalogColumn
	if err := json.Unmarshal(raw, &cs); err != nil {
		return nil, err
	}
	out := make([]store.ViewColumn, len(cs))
	for i, c := range cs {
		kind := store.ViewKind(0)
		for k := store.ViewString; k <= store.ViewBytes; k++ {
			if k.String() == c.Kind {
				kind = k
			}
		}
		if kind == 0 {
			return nil, fmt.Errorf("column %q has unknown kind %q, written by a newer statefun; upgrade statefun", c.Name, c.Kind)
		}
		out[i] = store.ViewColumn{Name: c.Name, Kind: kind, Repeated: c.Repeated}
	}
	return out, nil
}

// viewLockKey names the advisory lock of one view version in one schema.
func viewLockKey(schema string, def store.ViewDef) int64 {
	h := fnv.New64a()
	h.Write([]byte("statefun/view/" + schema + "/" + strconv.Itoa(def.Version) + "/" + def.Name))
	return int64(h.Sum64())
}

// EnsureView implements store.Views. It runs in one transaction holding
// an advisory lock on the version, so that of two nodes ensuring it at
// once one creates it and the other finds it; DDL is transactional, so
// a failure leaves neither table nor catalog row behind.
func (s *Store) EnsureView(ctx context.Context, def store.ViewDef) error {
	if s.closed.Load() {
		return errClosed()
	}
	if err := viewmatch.CheckDef(def); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	columns, err := catalogColumns(def.Columns)
	if err != nil {
		return err
	}
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.sql.lockView, viewLockKey(s.schema, def)); err != nil {
			return err
		}
		var entityType string
		var raw []byte
		err := tx.QueryRow(ctx, s.sql.viewVersion, def.Name, def.Version).Scan(&entityType, &raw)
		if err == nil {
			stored, err := parseCatalogColumns(raw)
			if err != nil {
				return err
			}
			return viewmatch.SameDef(store.ViewDef{EntityType: entityType, Columns: stored}, def)
		}
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		for _, stmt := range s.createViewStatements(def) {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		_, err = tx.Exec(ctx, s.sql.insertViewVersion, def.Name, def.Version, def.EntityType, columns, viewTable(def))
		return err
	})
	if err != nil {
		return s.viewError(err, def, "ensure")
	}
	return nil
}

func (s *Store) createViewStatements(def store.ViewDef) []string {
	table := s.quotedViewTable(def)
	var create strings.Builder
	create.WriteString("CREATE TABLE " + table + " (entity_id bytea PRIMARY KEY, seq bigint NOT NULL, row bytea")
	for i, c := range def.Columns {
		create.WriteString(", " + columnName(i) + " " + columnType(c))
	}
	create.WriteString(")")
	stmts := []string{create.String()}
	for i, c := range def.Columns {
		index := pgx.Identifier{viewTable(def) + "_" + columnName(i)}.Sanitize()
		if c.Repeated {
			stmts = append(stmts, fmt.Sprintf("CREATE INDEX %s ON %s USING gin (%s) WITH (fastupdate = off) WHERE row IS NOT NULL", index, table, columnName(i)))
		} else {
			stmts = append(stmts, fmt.Sprintf("CREATE INDEX %s ON %s (%s, entity_id) WHERE row IS NOT NULL", index, table, columnName(i)))
		}
	}
	return stmts
}

// viewError adds what the store was doing with which view to err, and
// the cure when the view's table does not exist.
func (s *Store) viewError(err error, def store.ViewDef, doing string) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" { // undefined_table
		return fmt.Errorf("postgres: %s view %q version %d: %w; the version does not exist: EnsureView creates it", doing, def.Name, def.Version, err)
	}
	if errors.As(err, &pgErr) && pgErr.Code == "54000" { // program_limit_exceeded: an index entry over a third of a page
		return fmt.Errorf("postgres: %s view %q version %d: %w; a column value this long (over about 2.6 kB) cannot be indexed: keep long fields out of the view's queried columns (a new version)", doing, def.Name, def.Version, err)
	}
	if errors.As(err, &pgErr) {
		return s.wrap(err, "%s view %q version %d", doing, def.Name, def.Version)
	}
	return fmt.Errorf("postgres: %s view %q version %d: %w", doing, def.Name, def.Version, err)
}

// ViewVersions implements store.Views.
func (s *Store) ViewVersions(ctx context.Context, name string) ([]store.ViewVersion, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	rows, err := s.pool.Query(ctx, s.sql.viewVersions, name)
	if err != nil {
		return nil, s.wrap(err, "read the versions of view %q", name)
	}
	defer rows.Close()
	var out []store.ViewVersion
	for rows.Next() {
		v := store.ViewVersion{Def: store.ViewDef{Name: name}}
		var raw []byte
		if err := rows.Scan(&v.Def.Version, &v.Def.EntityType, &raw, &v.Ready); err != nil {
			return nil, s.wrap(err, "read the versions of view %q", name)
		}
		if v.Def.Columns, err = parseCatalogColumns(raw); err != nil {
			return nil, fmt.Errorf("postgres: read version %d of view %q: %w", v.Def.Version, name, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, s.wrap(err, "read the versions of view %q", name)
	}
	return out, nil
}

// MarkViewReady implements store.Views.
func (s *Store) MarkViewReady(ctx context.Context, def store.ViewDef) error {
	if s.closed.Load() {
		return errClosed()
	}
	tag, err := s.pool.Exec(ctx, s.sql.markViewReady, def.Name, def.Version)
	if err != nil {
		return s.viewError(err, def, "mark ready")
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("postgres: mark view %q version %d ready: the version does not exist; EnsureView creates it", def.Name, def.Version)
	}
	return nil
}

// DropView implements store.Views. Dropping a version that does not
// exist does nothing.
func (s *Store) DropView(ctx context.Context, def store.ViewDef) error {
	if s.closed.Load() {
		return errClosed()
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, s.sql.lockView, viewLockKey(s.schema, def)); err != nil {
			return err
		}
		var table string
		err := tx.QueryRow(ctx, s.sql.deleteViewVersion, def.Name, def.Version).Scan(&table)
		if errors.Is(err, pgx.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{s.schema, table}.Sanitize())
		return err
	})
	if err != nil {
		return s.viewError(err, def, "drop")
	}
	return nil
}

// selectColumns is the select list of a view's rows.
func selectColumns(def store.ViewDef) string {
	var b strings.Builder
	b.WriteString("entity_id, seq, row")
	for i := range def.Columns {
		b.WriteString(", " + columnName(i))
	}
	return b.String()
}

// scanRow reads a row selected by selectColumns.
func scanRow(rows pgx.Rows, def store.ViewDef) (store.ViewRow, error) {
	var id []byte
	var r store.ViewRow
	dest := []any{&id, &r.Seq, &r.Row}
	holders := make([]any, len(def.Columns))
	for i, c := range def.Columns {
		switch {
		case c.Repeated && (c.Kind == store.ViewString || c.Kind == store.ViewBytes):
			holders[i] = new([][]byte)
		case c.Repeated && c.Kind == store.ViewInt:
			holders[i] = new([]int64)
		case c.Repeated && c.Kind == store.ViewFloat:
			holders[i] = new([]float64)
		case c.Repeated && c.Kind == store.ViewBool:
			holders[i] = new([]bool)
		case c.Kind == store.ViewInt:
			holders[i] = new(pgtype.Int8)
		case c.Kind == store.ViewFloat:
			holders[i] = new(pgtype.Float8)
		case c.Kind == store.ViewBool:
			holders[i] = new(pgtype.Bool)
		default:
			holders[i] = new([]byte)
		}
	}
	dest = append(dest, holders...)
	if err := rows.Scan(dest...); err != nil {
		return store.ViewRow{}, err
	}
	r.EntityID = string(id)
	if r.Row == nil {
		return r, nil // a tombstone: no columns
	}
	r.Columns = make([]any, len(def.Columns))
	for i, c := range def.Columns {
		switch h := holders[i].(type) {
		case *[][]byte:
			if c.Kind == store.ViewString {
				list := make([]string, len(*h))
				for j, e := range *h {
					list[j] = string(e)
				}
				r.Columns[i] = list
			} else {
				r.Columns[i] = *h
			}
		case *[]int64:
			r.Columns[i] = *h
		case *[]float64:
			r.Columns[i] = *h
		case *[]bool:
			r.Columns[i] = *h
		case *pgtype.Int8:
			r.Columns[i] = h.Int64
		case *pgtype.Float8:
			r.Columns[i] = h.Float64
		case *pgtype.Bool:
			r.Columns[i] = h.Bool
		case *[]byte:
			if c.Kind == store.ViewString {
				r.Columns[i] = string(*h)
			} else {
				r.Columns[i] = notNull(*h)
			}
		}
	}
	return r, nil
}

// LoadViewRows implements store.Views.
func (s *Store) LoadViewRows(ctx context.Context, def store.ViewDef, ids []string) (map[string]store.ViewRow, error) {
	if s.closed.Load() {
		return nil, errClosed()
	}
	keys := make([][]byte, len(ids))
	for i, id := range ids {
		keys[i] = notNull([]byte(id))
	}
	rows, err := s.pool.Query(ctx, "SELECT "+selectColumns(def)+" FROM "+s.quotedViewTable(def)+" WHERE entity_id = ANY($1::bytea[])", keys)
	if err != nil {
		return nil, s.viewError(err, def, "load rows of")
	}
	defer rows.Close()
	out := make(map[string]store.ViewRow, len(ids))
	for rows.Next() {
		r, err := scanRow(rows, def)
		if err != nil {
			return nil, s.viewError(err, def, "load rows of")
		}
		out[r.EntityID] = r
	}
	if err := rows.Err(); err != nil {
		return nil, s.viewError(err, def, "load rows of")
	}
	return out, nil
}

// UpdateViewRows implements store.Views: one statement, so all or
// nothing. Rows go in entity ID order, so that two writers of a version
// (there should be one) lock its rows in one order.
func (s *Store) UpdateViewRows(ctx context.Context, def store.ViewDef, rows []store.ViewRow) error {
	if s.closed.Load() {
		return errClosed()
	}
	if err := viewmatch.CheckRows(def, rows); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	if len(rows) == 0 {
		return nil
	}
	rows = slices.Clone(rows)
	slices.SortFunc(rows, func(a, b store.ViewRow) int { return strings.Compare(a.EntityID, b.EntityID) })
	sql, args := s.upsertViewRows(def, rows)
	if _, err := s.pool.Exec(ctx, sql, args...); err != nil {
		return s.viewError(err, def, "update rows of")
	}
	return nil
}

// upsertViewRows builds the statement of UpdateViewRows and its
// arguments: per row its entity ID, seq, row and plain columns, one
// array each; per repeated column the flat list of every row's elements
// and two arrays of the bounds of each row's slice of it.
func (s *Store) upsertViewRows(def store.ViewDef, rows []store.ViewRow) (string, []any) {
	ids := make([][]byte, len(rows))
	seqs := make([]int64, len(rows))
	payloads := make([][]byte, len(rows))
	for i, r := range rows {
		ids[i] = notNull([]byte(r.EntityID))
		seqs[i] = r.Seq
		if r.Row != nil {
			payloads[i] = notNull(r.Row)
		}
	}
	args := []any{ids, seqs, payloads}
	unnest := []string{"$1::bytea[]", "$2::bigint[]", "$3::bytea[]"}
	names := []string{"entity_id", "seq", "row"}
	selects := []string{"u.entity_id", "u.seq", "u.row"}
	sets := []string{"seq = excluded.seq", "row = excluded.row"}
	param := func(v any, typ string) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args)) + "::" + typ
	}
	for i, c := range def.Columns {
		col := columnName(i)
		sets = append(sets, col+" = excluded."+col)
		if !c.Repeated {
			unnest = append(unnest, param(plainColumn(c.Kind, rows, i), sqlType(c.Kind)+"[]"))
			names = append(names, col)
			selects = append(selects, "u."+col)
			continue
		}
		flat, from, to := repeatedColumn(c.Kind, rows, i)
		list := param(flat, sqlType(c.Kind)+"[]")
		unnest = append(unnest, param(from, "integer[]"), param(to, "integer[]"))
		names = append(names, col+"_from", col+"_to")
		selects = append(selects, fmt.Sprintf("CASE WHEN u.row IS NULL THEN NULL ELSE (%s)[u.%s_from:u.%s_to] END", list, col, col))
	}
	sql := "INSERT INTO " + s.quotedViewTable(def) + " AS t (" + selectColumns(def) + ")" +
		" SELECT " + strings.Join(selects, ", ") +
		" FROM unnest(" + strings.Join(unnest, ", ") + ") AS u (" + strings.Join(names, ", ") + ")" +
		" ON CONFLICT (entity_id) DO UPDATE SET " + strings.Join(sets, ", ") +
		" WHERE excluded.seq > t.seq"
	return sql, args
}

// plainColumn is column i of every row, NULL for tombstones.
func plainColumn(k store.ViewKind, rows []store.ViewRow, i int) any {
	switch k {
	case store.ViewInt:
		out := make([]pgtype.Int8, len(rows))
		for j, r := range rows {
			if r.Row != nil {
				out[j] = pgtype.Int8{Int64: r.Columns[i].(int64), Valid: true}
			}
		}
		return out
	case store.ViewFloat:
		out := make([]pgtype.Float8, len(rows))
		for j, r := range rows {
			if r.Row != nil {
				out[j] = pgtype.Float8{Float64: r.Columns[i].(float64), Valid: true}
			}
		}
		return out
	case store.ViewBool:
		out := make([]pgtype.Bool, len(rows))
		for j, r := range rows {
			if r.Row != nil {
				out[j] = pgtype.Bool{Bool: r.Columns[i].(bool), Valid: true}
			}
		}
		return out
	}
	out := make([][]byte, len(rows))
	for j, r := range rows {
		if r.Row != nil {
			out[j] = bytesValue(r.Columns[i])
		}
	}
	return out
}

// repeatedColumn flattens column i of every row into one list, and gives
// each row's slice of it as 1-based inclusive bounds (from > to: empty).
func repeatedColumn(k store.ViewKind, rows []store.ViewRow, i int) (flat any, from, to []int32) {
	from, to = make([]int32, len(rows)), make([]int32, len(rows))
	n := int32(0)
	bounds := func(j, size int) {
		from[j], to[j] = n+1, n+int32(size)
		n += int32(size)
	}
	switch k {
	case store.ViewInt:
		out := []int64{}
		for j, r := range rows {
			if r.Row != nil {
				list := r.Columns[i].([]int64)
				bounds(j, len(list))
				out = append(out, list...)
			}
		}
		return out, from, to
	case store.ViewFloat:
		out := []float64{}
		for j, r := range rows {
			if r.Row != nil {
				list := r.Columns[i].([]float64)
				bounds(j, len(list))
				out = append(out, list...)
			}
		}
		return out, from, to
	case store.ViewBool:
		out := []bool{}
		for j, r := range rows {
			if r.Row != nil {
				list := r.Columns[i].([]bool)
				bounds(j, len(list))
				out = append(out, list...)
			}
		}
		return out, from, to
	}
	out := [][]byte{}
	for j, r := range rows {
		if r.Row == nil {
			continue
		}
		switch list := r.Columns[i].(type) {
		case []string:
			bounds(j, len(list))
			for _, e := range list {
				out = append(out, bytesValue(e))
			}
		case [][]byte:
			bounds(j, len(list))
			for _, e := range list {
				out = append(out, bytesValue(e))
			}
		}
	}
	return out, from, to
}

// bytesValue is a string or bytes value as bytea, never NULL.
func bytesValue(v any) []byte {
	switch v := v.(type) {
	case string:
		return notNull([]byte(v))
	case []byte:
		return notNull(v)
	}
	return []byte{}
}

// paramValue is a query value as its column's SQL type takes it.
func paramValue(v any) any {
	switch v.(type) {
	case string, []byte:
		return bytesValue(v)
	}
	return v
}

// viewQueryMode plans each query with its parameters' values. A cached
// prepared statement would after five runs switch to a generic plan,
// made without the values, and with ORDER BY ... LIMIT such a plan
// tends to walk the primary key and filter, reading the whole view for a
// rare value; one parse per query is cheap beside that.
const viewQueryMode = pgx.QueryExecModeExec

// binaryResults asks for every result column in binary, which that mode
// would otherwise take as text: row payloads would cross the wire in hex,
// twice their size.
var binaryResults = pgx.QueryResultFormats{pgx.BinaryFormatCode}

// QueryView implements store.Views. Rows stream from the server as fn
// consumes them.
func (s *Store) QueryView(ctx context.Context, def store.ViewDef, q store.ViewQuery, fn func(store.ViewRow) error) error {
	if s.closed.Load() {
		return errClosed()
	}
	if err := viewmatch.CheckQuery(def, q); err != nil {
		return fmt.Errorf("postgres: %w", err)
	}
	sql, args := s.compileQuery(def, q)
	rows, err := s.pool.Query(ctx, sql, append([]any{viewQueryMode, binaryResults}, args...)...)
	if err != nil {
		return s.viewError(err, def, "query")
	}
	defer rows.Close()
	for rows.Next() {
		r, err := scanRow(rows, def)
		if err != nil {
			return s.viewError(err, def, "query")
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return s.viewError(err, def, "query")
	}
	return nil
}

// queryBuilder collects a query's text and its arguments: values only
// ever go in as $n parameters, and identifiers are the generated column
// and table names.
type queryBuilder struct {
	def  store.ViewDef
	sql  strings.Builder
	args []any
}

func (b *queryBuilder) param(v any, kind store.ViewKind) string {
	b.args = append(b.args, paramValue(v))
	return "$" + strconv.Itoa(len(b.args)) + "::" + sqlType(kind)
}

var sqlOps = map[store.ViewOp]string{
	store.ViewEq: "=", store.ViewNe: "<>", store.ViewLt: "<", store.ViewLe: "<=", store.ViewGt: ">", store.ViewGe: ">=",
}

func (b *queryBuilder) cond(c *store.ViewCond) {
	join := func(op, empty string) {
		if len(c.Args) == 0 {
			b.sql.WriteString(empty)
			return
		}
		b.sql.WriteString("(")
		for i := range c.Args {
			if i > 0 {
				b.sql.WriteString(op)
			}
			b.cond(&c.Args[i])
		}
		b.sql.WriteString(")")
	}
	switch c.Op {
	case store.ViewAnd:
		join(" AND ", "TRUE")
		return
	case store.ViewOr:
		join(" OR ", "FALSE")
		return
	case store.ViewNot:
		b.sql.WriteString("(NOT ")
		b.cond(&c.Args[0])
		b.sql.WriteString(")")
		return
	}
	col := b.def.Columns[c.Column]
	name := "t." + columnName(c.Column)
	value := b.param(c.Value, col.Kind)
	switch {
	case !col.Repeated:
		fmt.Fprintf(&b.sql, "%s %s %s", name, sqlOps[c.Op], value)
	case c.Op == store.ViewEq:
		// Containment, which the column's GIN index serves.
		fmt.Fprintf(&b.sql, "%s @> ARRAY[%s]", name, value)
	default:
		fmt.Fprintf(&b.sql, "EXISTS (SELECT FROM unnest(%s) AS e (v) WHERE e.v %s %s)", name, sqlOps[c.Op], value)
	}
}

// after writes the keyset condition of a cursor: the row sorts after the
// cursor's in the first column where they differ, each column in its
// own direction, the entity ID last.
func (b *queryBuilder) after(order []store.ViewOrder, cursor *store.ViewCursor) {
	id := "$" + strconv.Itoa(len(b.args)+1) + "::bytea"
	b.args = append(b.args, notNull([]byte(cursor.EntityID)))
	values := make([]string, len(order))
	for i, o := range order {
		values[i] = b.param(cursor.Values[i], b.def.Columns[o.Column].Kind)
	}
	b.sql.WriteString("(")
	for i := 0; i <= len(order); i++ {
		if i > 0 {
			b.sql.WriteString(" OR ")
		}
		b.sql.WriteString("(")
		for j := range i {
			fmt.Fprintf(&b.sql, "t.%s = %s AND ", columnName(order[j].Column), values[j])
		}
		if i == len(order) {
			fmt.Fprintf(&b.sql, "t.entity_id > %s", id)
		} else {
			op := ">"
			if order[i].Desc {
				op = "<"
			}
			fmt.Fprintf(&b.sql, "t.%s %s %s", columnName(order[i].Column), op, values[i])
		}
		b.sql.WriteString(")")
	}
	b.sql.WriteString(")")
}

// compileQuery turns a checked query into SQL and its arguments.
func (s *Store) compileQuery(def store.ViewDef, q store.ViewQuery) (string, []any) {
	b := &queryBuilder{def: def}
	b.sql.WriteString("SELECT " + selectColumns(def) + " FROM " + s.quotedViewTable(def) + " AS t WHERE t.row IS NOT NULL")
	if q.Where != nil {
		b.sql.WriteString(" AND ")
		b.cond(q.Where)
	}
	if q.After != nil {
		b.sql.WriteString(" AND ")
		b.after(q.Order, q.After)
	}
	b.sql.WriteString(" ORDER BY ")
	for _, o := range q.Order {
		b.sql.WriteString("t." + columnName(o.Column))
		if o.Desc {
			b.sql.WriteString(" DESC")
		}
		b.sql.WriteString(", ")
	}
	b.sql.WriteString("t.entity_id")
	b.args = append(b.args, int64(q.Limit))
	b.sql.WriteString(" LIMIT $" + strconv.Itoa(len(b.args)))
	return b.sql.String(), b.args
}

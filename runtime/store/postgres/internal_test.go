package postgres

import (
	"reflect"
	"strings"
	"testing"
	"testing/fstest"
)

func TestEveryQueryIsUsed(t *testing.T) {
	t.Parallel()
	s := newStatements(quoteSchema("s"))
	v := reflect.ValueOf(s).Elem()
	if v.NumField() != len(namedQueries) {
		t.Errorf("queries.sql has %d queries, statements %d fields: remove what is unused", len(namedQueries), v.NumField())
	}
	for i := range v.NumField() {
		if sql := v.Field(i).String(); strings.Contains(sql, "{{") {
			t.Errorf("%s keeps a placeholder: %s", v.Type().Field(i).Name, sql)
		}
	}
}

func TestParseQueriesRejectsMistakes(t *testing.T) {
	t.Parallel()
	for name, src := range map[string]string{
		"duplicate": "-- name: a\nSELECT 1;\n-- name: a\nSELECT 2;\n",
		"empty":     "-- name: a\n\n-- name: b\nSELECT 2;\n",
		"nameless":  "-- name:\nSELECT 1;\n",
	} {
		if _, err := parseQueries(src); err == nil {
			t.Errorf("%s: parseQueries accepted %q", name, src)
		}
	}
}

func TestLoadMigrationsRejectsMistakes(t *testing.T) {
	t.Parallel()
	sql := &fstest.MapFile{Data: []byte("SELECT 1;")}
	for name, fsys := range map[string]fstest.MapFS{
		"gap":      {"migrations/0001_a.sql": sql, "migrations/0003_c.sql": sql},
		"bad name": {"migrations/1_a.sql": sql},
		"no first": {"migrations/0002_b.sql": sql},
	} {
		if _, err := loadMigrations(fsys); err == nil {
			t.Errorf("%s: loadMigrations accepted it", name)
		}
	}
	if len(migrations) == 0 || migrations[0].version != 1 {
		t.Errorf("embedded migrations = %v", migrations)
	}
}

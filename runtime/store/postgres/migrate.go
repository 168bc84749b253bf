package postgres

import (
	"context"
	"embed"
	"fmt"
	"hash/fnv"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one file of migrations/, NNNN_what.sql, applied once per
// schema and recorded in its schema_migrations table.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations are the embedded files in version order. Versions are
// 1, 2, 3... with no gaps, so a missing or renumbered file fails every
// test instead of shipping.
var migrations = mustLoadMigrations(migrationFiles)

var migrationName = regexp.MustCompile(`^(\d{4})_[a-z0-9_]+\.sql$`)

func mustLoadMigrations(fsys fs.FS) []migration {
	ms, err := loadMigrations(fsys)
	if err != nil {
		panic("postgres: " + err.Error())
	}
	return ms
}

func loadMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "migrations/*")
	if err != nil {
		return nil, err
	}
	slices.Sort(names)
	ms := make([]migration, 0, len(names))
	for i, name := range names {
		base := path.Base(name)
		m := migrationName.FindStringSubmatch(base)
		if m == nil {
			return nil, fmt.Errorf("migration %s: name it NNNN_what.sql", name)
		}
		version, _ := strconv.Atoi(m[1])
		if version != i+1 {
			return nil, fmt.Errorf("migration %s: version %d, want %d: versions run 1, 2, 3... with no gaps", name, version, i+1)
		}
		sql, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, err
		}
		ms = append(ms, migration{version: version, name: base, sql: string(sql)})
	}
	return ms, nil
}

// Migrate applies the store's migrations to the database at url and
// returns: for a migrate command, or for deployments that open stores
// with WithoutMigrate. Only the WithSchema option matters here. It
// returns the schema's version before (0 when it had no tables yet) and
// after: equal when there was nothing to do.
func Migrate(ctx context.Context, url string, opts ...Option) (from, to int, err error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return 0, 0, err
	}
	connConfig, err := pgx.ParseConfig(url)
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: parse the database url: %w", err)
	}
	if connConfig.ConnectTimeout == 0 {
		connConfig.ConnectTimeout = defaultConnectTimeout
	}
	conn, err := pgx.ConnectConfig(ctx, connConfig)
	if err != nil {
		return 0, 0, connectError(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return migrate(ctx, conn, cfg.schema, newStatements(quoteSchema(cfg.schema)))
}

// Migrate applies any migrations the store's schema lacks. Open already
// did unless it was given WithoutMigrate.
func (s *Store) Migrate(ctx context.Context) error {
	if s.closed.Load() {
		return errClosed()
	}
	_, _, err := migrate(ctx, s.pool, s.schema, s.sql)
	return err
}

// beginner is a pool or a single connection.
type beginner interface {
	Begin(ctx context.Context) (pgx.Tx, error)
}

// migrate runs in one transaction holding an advisory lock named after
// the schema: processes starting together take turns, and the second
// finds nothing left to do. A failed migration rolls back entirely, its
// version unrecorded, so the next start retries it. It returns the
// schema's highest applied version before and after.
func migrate(ctx context.Context, db beginner, schema string, sql *statements) (from, to int, err error) {
	err = pgx.BeginFunc(ctx, db, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, sql.lockMigrations, migrationLockKey(schema)); err != nil {
			return fmt.Errorf("take the migration lock: %w", err)
		}
		// Look before creating: CREATE ... IF NOT EXISTS still demands the
		// CREATE privilege, which a runtime role of an already migrated
		// schema need not have.
		var exists bool
		if err := tx.QueryRow(ctx, sql.schemaExists, schema).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, sql.createSchema); err != nil {
				return fmt.Errorf("create the schema: %w", err)
			}
		}
		if err := tx.QueryRow(ctx, sql.migrationsTableExists, schema).Scan(&exists); err != nil {
			return err
		}
		if !exists {
			if _, err := tx.Exec(ctx, sql.createMigrationsTable); err != nil {
				return fmt.Errorf("create schema_migrations: %w", err)
			}
		}
		rows, err := tx.Query(ctx, sql.appliedMigrations)
		if err != nil {
			return err
		}
		applied, err := pgx.CollectRows(rows, pgx.RowTo[int32])
		if err != nil {
			return fmt.Errorf("read schema_migrations: %w", err)
		}
		for _, v := range applied {
			from = max(from, int(v))
		}
		to = from
		quoted := quoteSchema(schema)
		for _, m := range migrations {
			if slices.Contains(applied, int32(m.version)) {
				continue
			}
			if _, err := tx.Exec(ctx, strings.ReplaceAll(m.sql, schemaPlaceholder, quoted)); err != nil {
				return fmt.Errorf("apply %s: %w", m.name, err)
			}
			if _, err := tx.Exec(ctx, sql.recordMigration, m.version); err != nil {
				return fmt.Errorf("record %s: %w", m.name, err)
			}
			to = max(to, m.version)
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("postgres: migrate schema %q: %w", schema, err)
	}
	return from, to, nil
}

// migrationLockKey names the advisory lock of one schema's migrations, so
// that stores in different schemas of one database never wait for each
// other. Advisory locks share one key space per database; the prefix
// keeps this key apart from other users' keys in practice.
func migrationLockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("statefun/migrate/" + schema))
	return int64(h.Sum64()) // any 64 bits make a key: wrapping is fine
}

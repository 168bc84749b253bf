package postgres

import "github.com/jackc/pgx/v5/pgxpool"

// PoolForTest returns the pool s runs requests on.
func PoolForTest(s *Store) *pgxpool.Pool { return s.pool }

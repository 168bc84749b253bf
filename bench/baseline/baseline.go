// Package baseline is what statefun is measured against: the shopping cart
// written the stateless, FaaS way. Nothing is kept between requests; each
// request reads the cart from Postgres, and a write writes it back in the
// same transaction:
//
//	GetCart:  SELECT state FROM carts WHERE cart_id = $1
//	AddItem:  BEGIN; SELECT state ... FOR UPDATE; UPDATE (or INSERT); COMMIT
//
// It is written the way a careful engineer would write it, so that the
// comparison is with good stateless code rather than a strawman: one row
// per cart holding the state as protobuf bytes, statements prepared once
// per connection, a fixed-size pool opened at start (no connection setup on
// the request path), the row lock taken by the first read so that
// concurrent writers of one cart queue instead of losing updates, and the
// same validation and replies as the statefun example.
package baseline

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/timestamppb"

	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// Names of the statements each connection prepares. pgx runs a prepared
// statement when it is given its name in place of SQL.
const (
	stmtGet       = "baseline_get_cart"
	stmtGetLocked = "baseline_get_cart_for_update"
	stmtUpdate    = "baseline_update_cart"
	stmtInsert    = "baseline_insert_cart"
)

// statements returns the SQL of each prepared statement for a schema.
func statements(schema string) map[string]string {
	table := pgx.Identifier{schema, "carts"}.Sanitize()
	return map[string]string{
		stmtGet:       "SELECT state FROM " + table + " WHERE cart_id = $1",
		stmtGetLocked: "SELECT state FROM " + table + " WHERE cart_id = $1 FOR UPDATE",
		stmtUpdate:    "UPDATE " + table + " SET state = $2 WHERE cart_id = $1",
		// A new cart is inserted without overwriting: two first writes of
		// one cart race here, and the loser (0 rows) retries against the
		// winner's row rather than replacing it (a blind upsert would lose
		// the winner's item).
		stmtInsert: "INSERT INTO " + table + " (cart_id, state) VALUES ($1, $2) ON CONFLICT (cart_id) DO NOTHING",
	}
}

// Migrate creates the schema and the carts table if they do not exist.
func Migrate(ctx context.Context, url, schema string) error {
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return fmt.Errorf("baseline: connect: %w", err)
	}
	defer conn.Close(ctx)
	quoted := pgx.Identifier{schema}.Sanitize()
	_, err = conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+quoted+";"+
		"CREATE TABLE IF NOT EXISTS "+quoted+".carts (cart_id text PRIMARY KEY, state bytea NOT NULL)")
	if err != nil {
		return fmt.Errorf("baseline: create the carts table in schema %s: %w", schema, err)
	}
	return nil
}

// OpenPool opens a pool of exactly size connections to url, each with the
// baseline's statements prepared. All connections are opened before it
// returns, so that no request pays for a connection or a prepare.
func OpenPool(ctx context.Context, url, schema string, size int) (*pgxpool.Pool, error) {
	if size < 1 {
		return nil, fmt.Errorf("baseline: pool size %d: use at least 1", size)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("baseline: parse the database url: %w", err)
	}
	cfg.MaxConns, cfg.MinConns = int32(size), int32(size)
	sqls := statements(schema)
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		for name, sql := range sqls {
			if _, err := conn.Prepare(ctx, name, sql); err != nil {
				return fmt.Errorf("prepare %s: %w", name, err)
			}
		}
		return nil
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("baseline: open the pool: %w", err)
	}
	// Hold every connection once: this opens (and prepares) all of them now.
	conns := make([]*pgxpool.Conn, 0, size)
	defer func() {
		for _, c := range conns {
			c.Release()
		}
	}()
	for range size {
		c, err := pool.Acquire(ctx)
		if err != nil {
			pool.Close()
			return nil, fmt.Errorf("baseline: open a connection (is the carts table there? run migrate): %w", err)
		}
		conns = append(conns, c)
	}
	return pool, nil
}

// Server implements cartv1.ShoppingCartServiceServer on Postgres, keeping
// nothing in memory between requests.
type Server struct {
	cartv1.UnimplementedShoppingCartServiceServer
	pool *pgxpool.Pool
}

// New returns a server on a pool from OpenPool.
func New(pool *pgxpool.Pool) *Server { return &Server{pool: pool} }

// maxAttempts bounds the retries of a first write that lost the race to
// create its cart; the second attempt finds the row, so two always suffice
// unless the row is deleted in between, which nothing here does.
const maxAttempts = 3

// errRaced: another request created the cart between our read and insert.
var errRaced = errors.New("cart created concurrently")

// change runs decide on the cart's current state inside a transaction that
// holds the cart's row lock, and stores the state decide leaves behind.
// decide returns a gRPC status error to refuse the change.
func (s *Server) change(ctx context.Context, id string, decide func(*cartv1.Cart) error) error {
	if id == "" {
		return status.Error(codes.InvalidArgument, "missing entity key: field cart_id is empty; set it to the cart's ID")
	}
	for attempt := 1; ; attempt++ {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var state []byte
			err := tx.QueryRow(ctx, stmtGetLocked, id).Scan(&state)
			exists := err == nil
			if err != nil && !errors.Is(err, pgx.ErrNoRows) {
				return err
			}
			cart := &cartv1.Cart{}
			if err := proto.Unmarshal(state, cart); err != nil {
				return status.Errorf(codes.DataLoss, "stored cart %q does not decode: %v", id, err)
			}
			if err := decide(cart); err != nil {
				return err
			}
			next, err := proto.Marshal(cart)
			if err != nil {
				return status.Errorf(codes.Internal, "encode cart %q: %v", id, err)
			}
			if exists {
				_, err = tx.Exec(ctx, stmtUpdate, id, next)
				return err
			}
			tag, err := tx.Exec(ctx, stmtInsert, id, next)
			if err == nil && tag.RowsAffected() == 0 {
				return errRaced
			}
			return err
		})
		if errors.Is(err, errRaced) && attempt < maxAttempts {
			continue
		}
		return replyError(err)
	}
}

// replyError passes gRPC statuses through and turns database errors into
// UNAVAILABLE, as statefun does.
func replyError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Errorf(codes.Unavailable, "database: %v", err)
}

func checkOpen(cart *cartv1.Cart) error {
	if cart.GetCheckedOutAt() != nil {
		return status.Error(codes.FailedPrecondition, "cart is checked out; start a new cart")
	}
	return nil
}

func findItem(cart *cartv1.Cart, sku string) int {
	for i, it := range cart.GetItems() {
		if it.GetSku() == sku {
			return i
		}
	}
	return -1
}

// AddItem adds a positive quantity of a product to an open cart.
func (s *Server) AddItem(ctx context.Context, req *cartv1.AddItemRequest) (*emptypb.Empty, error) {
	err := s.change(ctx, req.GetCartId(), func(cart *cartv1.Cart) error {
		if err := checkOpen(cart); err != nil {
			return err
		}
		if req.GetSku() == "" {
			return status.Error(codes.InvalidArgument, "sku is required")
		}
		if req.GetQuantity() <= 0 {
			return status.Errorf(codes.InvalidArgument, "quantity must be positive, got %d", req.GetQuantity())
		}
		if i := findItem(cart, req.GetSku()); i >= 0 {
			cart.Items[i].Quantity += req.GetQuantity()
			return nil
		}
		cart.Items = append(cart.Items, &cartv1.LineItem{Sku: req.GetSku(), Quantity: req.GetQuantity()})
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// RemoveItem removes a product that is in the cart.
func (s *Server) RemoveItem(ctx context.Context, req *cartv1.RemoveItemRequest) (*emptypb.Empty, error) {
	err := s.change(ctx, req.GetCartId(), func(cart *cartv1.Cart) error {
		if err := checkOpen(cart); err != nil {
			return err
		}
		i := findItem(cart, req.GetSku())
		if i < 0 {
			return status.Errorf(codes.NotFound, "sku %q is not in the cart", req.GetSku())
		}
		cart.Items = append(cart.Items[:i], cart.Items[i+1:]...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// Checkout closes a cart that has items.
func (s *Server) Checkout(ctx context.Context, req *cartv1.CheckoutRequest) (*emptypb.Empty, error) {
	err := s.change(ctx, req.GetCartId(), func(cart *cartv1.Cart) error {
		if err := checkOpen(cart); err != nil {
			return err
		}
		if len(cart.GetItems()) == 0 {
			return status.Error(codes.FailedPrecondition, "cannot check out an empty cart")
		}
		cart.CheckedOutAt = timestamppb.Now()
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &emptypb.Empty{}, nil
}

// GetCart reads the cart: one statement, no transaction block. A cart
// never written is empty, as in statefun.
func (s *Server) GetCart(ctx context.Context, req *cartv1.GetCartRequest) (*cartv1.Cart, error) {
	if req.GetCartId() == "" {
		return nil, status.Error(codes.InvalidArgument, "missing entity key: field cart_id is empty; set it to the cart's ID")
	}
	var state []byte
	err := s.pool.QueryRow(ctx, stmtGet, req.GetCartId()).Scan(&state)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return nil, replyError(err)
	}
	cart := &cartv1.Cart{}
	if err := proto.Unmarshal(state, cart); err != nil {
		return nil, status.Errorf(codes.DataLoss, "stored cart %q does not decode: %v", req.GetCartId(), err)
	}
	return cart, nil
}

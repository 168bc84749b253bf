// Command baselineserver serves the shopping cart's gRPC API the stateless
// way (package baseline): every request reads, and every write rewrites,
// the cart's row in Postgres. It stops on SIGTERM or SIGINT.
//
//	baselineserver migrate --database-url URL [--database-schema baseline]
//	baselineserver [serve] --listen 127.0.0.1:9001 --database-url URL [--pool-size 16]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	"github.com/statefun-go/statefun/bench/baseline"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

func main() {
	args := os.Args[1:]
	cmd := "serve"
	if len(args) > 0 && (args[0] == "serve" || args[0] == "migrate") {
		cmd, args = args[0], args[1:]
	}
	fs := flag.NewFlagSet(cmd, flag.ExitOnError)
	listen := fs.String("listen", "127.0.0.1:9001", "gRPC address to listen on")
	url := fs.String("database-url", "postgres://postgres@127.0.0.1:5432/statefun?sslmode=disable", "Postgres URL")
	schema := fs.String("database-schema", "baseline", "schema of the carts table")
	// 16: enough transactions in flight for Postgres to share each WAL
	// flush among several commits, few enough that 2 cores do not spend
	// their time switching between backends. Tried at concurrency 64 on
	// the benchmark machine: 8 halved write throughput, 32 and 64 did no
	// better than 16 for writes and no better or worse for reads.
	poolSize := fs.Int("pool-size", 16, "Postgres connections, all opened at start")
	_ = fs.Parse(args)
	if err := run(cmd, *listen, *url, *schema, *poolSize); err != nil {
		fmt.Fprintln(os.Stderr, "baselineserver:", err)
		os.Exit(1)
	}
}

func run(cmd, listen, url, schema string, poolSize int) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cmd == "migrate" {
		return baseline.Migrate(ctx, url, schema)
	}
	return serve(ctx, listen, url, schema, poolSize)
}

func serve(ctx context.Context, listen, url, schema string, poolSize int) error {
	pool, err := baseline.OpenPool(ctx, url, schema, poolSize)
	if err != nil {
		return err
	}
	defer pool.Close()
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	srv := grpc.NewServer()
	cartv1.RegisterShoppingCartServiceServer(srv, baseline.New(pool))
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	fmt.Fprintln(os.Stderr, "serving gRPC on", lis.Addr())
	if err := srv.Serve(lis); err != nil && !errors.Is(err, grpc.ErrServerStopped) {
		return err
	}
	return nil
}

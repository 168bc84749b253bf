// Command noopserver serves the shopping cart's gRPC API with handlers that
// return at once (package noop): the ceiling of the benchmark. It stops on
// SIGTERM or SIGINT.
//
//	noopserver --listen 127.0.0.1:9000 [--pprof-listen 127.0.0.1:9001]
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"syscall"

	"google.golang.org/grpc"

	"github.com/statefun-go/statefun/bench/noop"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:9000", "gRPC address to listen on")
	pprofListen := flag.String("pprof-listen", "", "HTTP address serving /debug/pprof/ (for the benchmark's profile); empty disables")
	flag.Parse()
	if *pprofListen != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		go func() { _ = http.ListenAndServe(*pprofListen, mux) }() //nolint:gosec // a benchmark's loopback listener
	}
	if err := run(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "noopserver:", err)
		os.Exit(1)
	}
}

func run(listen string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lis, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", listen, err)
	}
	srv := grpc.NewServer()
	cartv1.RegisterShoppingCartServiceServer(srv, noop.Server{})
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	fmt.Fprintln(os.Stderr, "serving gRPC on", lis.Addr())
	return srv.Serve(lis)
}

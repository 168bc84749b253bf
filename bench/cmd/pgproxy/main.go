// Command pgproxy puts a delay between Postgres and its clients (package
// pgproxy) and serves its round-trip counters as JSON. It stops on SIGTERM
// or SIGINT.
//
//	pgproxy --listen 127.0.0.1:6432 --upstream 127.0.0.1:5432 --delay 500us --stats-listen 127.0.0.1:6433
//	curl http://127.0.0.1:6433/stats
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/statefun-go/statefun/bench/pgproxy"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:6432", "address clients connect to")
	upstream := flag.String("upstream", "127.0.0.1:5432", "address of the Postgres server")
	delay := flag.Duration("delay", 500*time.Microsecond, "delay added in each direction (a round trip gets twice this)")
	statsListen := flag.String("stats-listen", "", "HTTP address serving the counters at /stats; empty disables")
	flag.Parse()
	if err := run(*listen, *upstream, *delay, *statsListen); err != nil {
		fmt.Fprintln(os.Stderr, "pgproxy:", err)
		os.Exit(1)
	}
}

func run(listen, upstream string, delay time.Duration, statsListen string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	p, err := pgproxy.Listen(listen, upstream, delay)
	if err != nil {
		return err
	}
	if statsListen != "" {
		lis, err := net.Listen("tcp", statsListen)
		if err != nil {
			_ = p.Close()
			return fmt.Errorf("listen for stats on %s: %w", statsListen, err)
		}
		mux := http.NewServeMux()
		mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(p.Stats())
		})
		srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(lis) }()
		defer srv.Close()
	}
	go func() {
		<-ctx.Done()
		_ = p.Close()
	}()
	fmt.Fprintf(os.Stderr, "proxying %s -> %s with %v each way\n", p.Addr(), upstream, delay)
	if err := p.Serve(); err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// Command transportload measures what one call costs the shopping cart
// server's CPU over each transport it serves: grpc-go on its gRPC port;
// connect-go's gRPC, Connect binary and Connect JSON on its HTTP port. It
// starts the server binary it is given (in-memory store unless a database
// URL is given, so that a call costs the transport and the runtime and
// nothing else), then loads the transports in turn, closed loop at a fixed
// concurrency, with writes (AddItem) and reads (GetCart), for several
// interleaved rounds so that a change of the machine's load falls on all of
// them alike. The server's CPU comes from /proc/PID/stat at the edges of
// each measured window; the figure is its CPU time divided by the calls
// answered. TRANSPORT.md reports a run.
//
//	go build -o /tmp/shoppingcart ./examples/shoppingcart
//	go run ./bench/cmd/transportload --server /tmp/shoppingcart
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"connectrpc.com/connect"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/statefun-go/statefun/bench/internal/procstat"
	"github.com/statefun-go/statefun/bench/load"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

type options struct {
	server      string
	databaseURL string
	only        string
	concurrency int
	carts       int
	ramp        time.Duration
	duration    time.Duration
	rounds      int
}

func main() {
	var o options
	flag.StringVar(&o.server, "server", "", "the shopping cart server binary (go build ./examples/shoppingcart)")
	flag.StringVar(&o.databaseURL, "database-url", "", "a Postgres database for the server; empty for its in-memory store")
	flag.StringVar(&o.only, "only", "", "comma-separated transports to measure (default all): "+strings.Join(transportNames(), ", "))
	flag.IntVar(&o.concurrency, "concurrency", 64, "calls in flight")
	flag.IntVar(&o.carts, "carts", 1000, "carts called, uniformly")
	flag.DurationVar(&o.ramp, "ramp", 2*time.Second, "load before each measured window, not counted")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "each measured window")
	flag.IntVar(&o.rounds, "rounds", 3, "rounds over every transport; each figure is the median of its rounds")
	flag.Parse()
	if o.server == "" {
		fmt.Fprintln(os.Stderr, "transportload: --server is required; build it with: go build -o /tmp/shoppingcart ./examples/shoppingcart")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, o)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "transportload:", err)
		os.Exit(1)
	}
}

// A transport is a way to call the server: a client for the port it uses.
type transport struct {
	name   string
	dial   func(grpcAddr, httpAddr string) (cartv1.ShoppingCartServiceClient, func(), error)
	remark string
}

var transports = []transport{
	{"grpc-go", dialGRPC, "gRPC port, grpc-go server and client"},
	{"connect-grpc", dialConnect(connect.WithGRPC()), "HTTP port, gRPC over h2c, connect-go server and client"},
	{"connect-proto", dialConnect(), "HTTP port, Connect binary over h2c, connect-go server and client"},
	{"connect-json-h1", dialJSON(load.HTTP1), "HTTP port, Connect JSON over HTTP/1.1, the benchmark's JSON client"},
	{"connect-json-h2c", dialJSON(load.HTTP2), "HTTP port, Connect JSON over h2c, the benchmark's JSON client"},
}

func transportNames() []string {
	var names []string
	for _, t := range transports {
		names = append(names, t.name)
	}
	return names
}

// cell is one measured window.
type cell struct {
	transport string
	write     bool
	rate      float64 // calls per second
	serverUS  float64 // server CPU per call, µs
	errors    int64
}

func run(ctx context.Context, o options) error {
	chosen := transports
	if o.only != "" {
		chosen = nil
		for name := range strings.SplitSeq(o.only, ",") {
			i := slices.IndexFunc(transports, func(t transport) bool { return t.name == name })
			if i < 0 {
				return fmt.Errorf("--only: no transport %q; the transports are %s", name, strings.Join(transportNames(), ", "))
			}
			chosen = append(chosen, transports[i])
		}
	}
	srv, err := startServer(ctx, o)
	if err != nil {
		return err
	}
	defer srv.stop()
	loadStart := loadAverage()
	fmt.Printf("server %s (pid %d), concurrency %d, %d carts, %d rounds of %s (after %s of ramp) per cell; load average %s\n",
		strings.Join(srv.cmd.Args, " "), srv.cmd.Process.Pid, o.concurrency, o.carts, o.rounds, o.duration, o.ramp, loadStart)

	var cells []cell
	for round := range o.rounds {
		for _, t := range chosen {
			client, closeClient, err := t.dial(srv.grpcAddr, srv.httpAddr)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			for _, write := range []bool{true, false} {
				c, err := measure(ctx, o, srv.cmd.Process.Pid, client, write)
				if err != nil {
					closeClient()
					return fmt.Errorf("%s: %w", t.name, err)
				}
				c.transport = t.name
				fmt.Fprintf(os.Stderr, "round %d: %-17s %-6s %8.0f calls/s %6.1f µs server CPU/call\n", round+1, t.name, kind(write), c.rate, c.serverUS)
				cells = append(cells, c)
			}
			closeClient()
		}
	}
	report(os.Stdout, chosen, cells)
	fmt.Printf("load average at the end: %s\n", loadAverage())
	return nil
}

func kind(write bool) string {
	if write {
		return "write"
	}
	return "read"
}

// measure runs one window of writes or reads and reads the server's CPU
// time at its edges.
func measure(ctx context.Context, o options, pid int, client cartv1.ShoppingCartServiceClient, write bool) (cell, error) {
	var cpuStart, cpuEnd float64
	readFraction := 1.0
	if write {
		readFraction = 0
	}
	res, err := load.Run(ctx, load.Config{
		Clients: []cartv1.ShoppingCartServiceClient{client}, Concurrency: o.concurrency, Carts: o.carts,
		ReadFraction: readFraction, Ramp: o.ramp, Duration: o.duration, Seed: 1,
		OnStart: func() { cpuStart = procstat.ProcessCPU(pid) },
		OnEnd:   func() { cpuEnd = procstat.ProcessCPU(pid) },
	})
	if err != nil {
		return cell{}, err
	}
	if res.Requests == 0 {
		return cell{}, fmt.Errorf("no call succeeded (%d errors; first: %s)", res.Errors, res.FirstError)
	}
	return cell{
		write: write, rate: res.Throughput, errors: res.Errors,
		serverUS: (cpuEnd - cpuStart) / float64(res.Requests) * 1e6,
	}, nil
}

// report prints, for each transport and kind of call, the median of its
// rounds.
func report(w *os.File, chosen []transport, cells []cell) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\tcall\tcalls/s\tserver µs/call\terrors\t")
	for _, t := range chosen {
		for _, write := range []bool{true, false} {
			var rates, costs []float64
			var errs int64
			for _, c := range cells {
				if c.transport == t.name && c.write == write {
					rates = append(rates, c.rate)
					costs = append(costs, c.serverUS)
					errs += c.errors
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f\t%.1f\t%d\t\n", t.name, kind(write), median(rates), median(costs), errs)
		}
	}
	_ = tw.Flush()
	for _, t := range chosen {
		fmt.Fprintf(w, "  %s: %s\n", t.name, t.remark)
	}
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	if len(xs)%2 == 1 {
		return xs[len(xs)/2]
	}
	return (xs[len(xs)/2-1] + xs[len(xs)/2]) / 2
}

func dialGRPC(grpcAddr, _ string) (cartv1.ShoppingCartServiceClient, func(), error) {
	conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, err
	}
	return cartv1.NewShoppingCartServiceClient(conn), func() { _ = conn.Close() }, nil
}

// dialConnect returns a connect-go client over h2c, one connection
// multiplexed as a gRPC client's is.
func dialConnect(opts ...connect.ClientOption) func(string, string) (cartv1.ShoppingCartServiceClient, func(), error) {
	return func(_, httpAddr string) (cartv1.ShoppingCartServiceClient, func(), error) {
		var protocols http.Protocols
		protocols.SetUnencryptedHTTP2(true)
		tr := &http.Transport{Protocols: &protocols, DisableCompression: true}
		client := &http.Client{Transport: tr}
		base := "http://" + httpAddr
		return &connectCart{
			add: connect.NewClient[cartv1.AddItemRequest, emptypb.Empty](client, base+cartv1.ShoppingCartService_AddItem_FullMethodName, opts...),
			get: connect.NewClient[cartv1.GetCartRequest, cartv1.Cart](client, base+cartv1.ShoppingCartService_GetCart_FullMethodName, opts...),
		}, tr.CloseIdleConnections, nil
	}
}

func dialJSON(version int) func(string, string) (cartv1.ShoppingCartServiceClient, func(), error) {
	return func(_, httpAddr string) (cartv1.ShoppingCartServiceClient, func(), error) {
		c, err := load.NewConnectClient("http://"+httpAddr, version)
		if err != nil {
			return nil, nil, err
		}
		return c, c.Close, nil
	}
}

// connectCart calls the two methods the load sends with connect-go.
type connectCart struct {
	add *connect.Client[cartv1.AddItemRequest, emptypb.Empty]
	get *connect.Client[cartv1.GetCartRequest, cartv1.Cart]
}

var errNotLoaded = errors.New("transportload sends only AddItem and GetCart")

func (c *connectCart) AddItem(ctx context.Context, in *cartv1.AddItemRequest, _ ...grpc.CallOption) (*emptypb.Empty, error) {
	res, err := c.add.CallUnary(ctx, connect.NewRequest(in))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func (c *connectCart) GetCart(ctx context.Context, in *cartv1.GetCartRequest, _ ...grpc.CallOption) (*cartv1.Cart, error) {
	res, err := c.get.CallUnary(ctx, connect.NewRequest(in))
	if err != nil {
		return nil, err
	}
	return res.Msg, nil
}

func (c *connectCart) RemoveItem(context.Context, *cartv1.RemoveItemRequest, ...grpc.CallOption) (*emptypb.Empty, error) {
	return nil, errNotLoaded
}

func (c *connectCart) Checkout(context.Context, *cartv1.CheckoutRequest, ...grpc.CallOption) (*emptypb.Empty, error) {
	return nil, errNotLoaded
}

func (c *connectCart) ExpireCart(context.Context, *cartv1.ExpireCartRequest, ...grpc.CallOption) (*emptypb.Empty, error) {
	return nil, errNotLoaded
}

// server is the running shopping cart server.
type server struct {
	cmd                *exec.Cmd
	grpcAddr, httpAddr string
	log                *bytes.Buffer
}

func startServer(ctx context.Context, o options) (*server, error) {
	grpcAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	args := []string{"serve", "--listen", grpcAddr, "--http-listen", httpAddr, "--log-level", "warn"}
	if o.databaseURL != "" {
		args = append(args, "--database-url", o.databaseURL)
	} else {
		args = append(args, "--data-dir", ":memory:")
	}
	s := &server{grpcAddr: grpcAddr, httpAddr: httpAddr, log: &bytes.Buffer{}}
	s.cmd = exec.Command(o.server, args...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", o.server, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		res, err := http.Get("http://" + httpAddr + "/healthz")
		if err == nil {
			_ = res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s, nil
			}
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			s.stop()
			return nil, fmt.Errorf("the server did not become healthy within 30s:\n%s", s.log)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the server with SIGTERM, or SIGKILL after 10s.
func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		_ = s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-done
	}
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// loadAverage is the machine's 1, 5 and 15 minute load averages.
func loadAverage() string {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	fields := strings.Fields(string(data))
	if len(fields) < 3 {
		return "unknown"
	}
	return strings.Join(fields[:3], " ")
}

package main

import (
	"context"
	"fmt"
	"log"
	"slices"
	"time"

	"github.com/statefun-go/statefun/bench/load"
	"github.com/statefun-go/statefun/bench/report"
	cartv1 "github.com/statefun-go/statefun/examples/shoppingcart/gen/shop/cart/v1"
)

// runHTTP measures the HTTP/JSON cells: the shopping cart server (Postgres
// store) and the no-op Connect server called with Connect unary JSON over
// HTTP/1.1 and over h2c, writes and reads at every concurrency, uniform
// popularity; and, at the top concurrency, interleaved with them, the
// shopping cart server and no-op gRPC over gRPC, the reference the
// targets compare with. One process of each server serves all its cells.
func (b *bench) runHTTP(ctx context.Context) error {
	hr := &report.HTTPRun{
		Started: time.Now().UTC(), Revision: b.res.Machine.Revision, LoadStart: loadAverage(), Conns: min(b.o.conns, 64),
	}
	b.res.HTTP = hr
	b.mu.Lock()
	b.problems = &hr.Problems
	b.mu.Unlock()
	defer func() {
		b.mu.Lock()
		b.problems = &b.res.Problems
		b.mu.Unlock()
	}()
	log.Printf("HTTP/JSON: Connect JSON over HTTP/1.1 and h2c, against statefun and no-op Connect")
	var systems []*system
	var jsonClients []*load.ConnectClient
	defer func() {
		for _, s := range systems {
			s.close()
		}
		for _, c := range jsonClients {
			c.Close()
		}
	}()
	sf, err := b.startSystemWith(ctx, report.StatefunPostgres, startOptions{})
	if err != nil {
		return err
	}
	systems = append(systems, sf)
	// Creates the carts (in a run of this part alone) and loads them all
	// into memory, as the write workload's warm-up does.
	if err := b.warm(ctx, sf, true); err != nil {
		return err
	}
	noopGRPC, err := b.startSystemWith(ctx, report.Noop, startOptions{})
	if err != nil {
		return err
	}
	systems = append(systems, noopGRPC)
	noopConnect, err := b.startNoopConnect(ctx)
	if err != nil {
		return err
	}
	systems = append(systems, noopConnect)

	// The variants measured: a system reached over one protocol.
	var variants []*system
	for _, s := range []*system{noopGRPC, sf} {
		v := *s
		v.protocol = report.GRPC
		variants = append(variants, &v)
	}
	for _, p := range report.HTTPProtocols {
		for _, s := range []*system{noopConnect, sf} {
			v, clients, err := b.overJSON(ctx, s, p)
			jsonClients = append(jsonClients, clients...)
			if err != nil {
				u := report.Unavailable{System: s.name, Protocol: p, Reason: err.Error()}
				hr.Unavailable = append(hr.Unavailable, u)
				log.Printf("  %s over %s: not measured: %s", s.name, p, u.Reason)
				continue
			}
			variants = append(variants, v)
		}
	}
	top := slices.Max(b.o.concurrencies)
	for _, wl := range []string{report.Write, report.Read} {
		readFraction := map[string]float64{report.Write: 0, report.Read: 1}[wl]
		for _, c := range b.o.concurrencies {
			for _, v := range variants {
				if v.protocol == report.GRPC && c != top {
					continue
				}
				cell, err := b.measure(ctx, v, wl, report.Uniform, c, readFraction)
				if err != nil {
					return err
				}
				hr.Cells = append(hr.Cells, cell)
			}
		}
	}
	for _, s := range systems {
		if err := b.stopSystem(ctx, s, ""); err != nil {
			return err
		}
	}
	hr.LoadEnd = loadAverage()
	hr.WallTime = time.Since(hr.Started).Round(time.Second)
	return nil
}

// startNoopConnect starts the no-op Connect server and waits until it
// answers.
func (b *bench) startNoopConnect(ctx context.Context) (*system, error) {
	addr := freeAddr()
	n := &node{name: report.NoopConnect, addr: addr, bin: b.bins["noopconnect"], args: []string{"--listen", addr}}
	if err := b.startNode(n); err != nil {
		return nil, err
	}
	s := &system{name: report.NoopConnect, nodes: []*node{n}, connectURL: "http://" + addr}
	c, err := load.NewConnectClient(s.connectURL, load.HTTP1)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	err = waitFor(ctx, func() error {
		if n.proc.done() {
			return fmt.Errorf("%s exited at start", n.name)
		}
		_, err := c.GetCart(ctx, &cartv1.GetCartRequest{CartId: "ready"})
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s did not start: %w (log: %s)", n.name, err, n.proc.logPath)
	}
	return s, nil
}

// overJSON returns system s reached with Connect JSON over protocol p
// (report.JSONHTTP1 or JSONH2C), through clients of its own, each of which
// has made one call: so each HTTP/2 client has its connection before the
// load starts, and a server that cannot be called so is found here. It
// returns the clients it made, to be closed, also on error.
func (b *bench) overJSON(ctx context.Context, s *system, p string) (*system, []*load.ConnectClient, error) {
	version := map[string]int{report.JSONHTTP1: load.HTTP1, report.JSONH2C: load.HTTP2}[p]
	if s.connectURL == "" {
		return nil, nil, fmt.Errorf("%s has no HTTP port", s.name)
	}
	v := *s
	v.protocol, v.clients, v.conns = p, nil, nil
	var made []*load.ConnectClient
	for range min(b.o.conns, 64) {
		c, err := load.NewConnectClient(s.connectURL, version)
		if err != nil {
			return nil, made, err
		}
		made = append(made, c)
		cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err = c.GetCart(cctx, &cartv1.GetCartRequest{CartId: load.CartID(0)})
		cancel()
		if err != nil {
			return nil, made, fmt.Errorf("a first call (GetCart at %s) failed: %w", s.connectURL, err)
		}
		v.clients = append(v.clients, c)
	}
	return &v, made, nil
}

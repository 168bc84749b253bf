package main

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/statefun-go/statefun/bench/load"
	"github.com/statefun-go/statefun/bench/report"
)

// pprofOverlay is compiled into a second build of the shopping cart
// example (go build -overlay), so that the server can be profiled without
// adding a profiling endpoint to the example itself. It does nothing
// unless STATEFUN_BENCH_PPROF names an address.
const pprofOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
)

func init() {
	if addr := os.Getenv("STATEFUN_BENCH_PPROF"); addr != "" {
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
`

// buildProfiled builds the example with the pprof overlay.
func (b *bench) buildProfiled(ctx context.Context) error {
	src := filepath.Join(b.tmp, "pprof_overlay.go")
	if err := os.WriteFile(src, []byte(pprofOverlay), 0o644); err != nil {
		return err
	}
	overlay, err := json.Marshal(map[string]map[string]string{
		"Replace": {filepath.Join(b.repo, "examples", "shoppingcart", "zz_bench_pprof.go"): src},
	})
	if err != nil {
		return err
	}
	overlayFile := filepath.Join(b.tmp, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		return err
	}
	bin := filepath.Join(b.tmp, "shoppingcart-pprof")
	if err := b.runCommand(ctx, "build shoppingcart with a pprof listener", "go", "build", "-overlay", overlayFile, "-o", bin, "./examples/shoppingcart"); err != nil {
		return err
	}
	b.bins["shoppingcart-pprof"] = bin
	return nil
}

// profileSeconds is the length of a profile: long enough for a few hundred
// samples at 100 Hz even when the server uses a fraction of a core.
const profileSeconds = 5

// runProfile repeats the write, uniform, highest-concurrency cell on
// profiling builds of statefun (Postgres store) and of the no-op server,
// and records where each spends its CPU: the difference is what statefun
// adds to a gRPC call.
func (b *bench) runProfile(ctx context.Context) error {
	for _, name := range []string{report.StatefunPostgres, report.Noop} {
		if err := b.profileSystem(ctx, name); err != nil {
			return err
		}
	}
	return nil
}

func (b *bench) profileSystem(ctx context.Context, name string) error {
	c := slices.Max(b.o.concurrencies)
	log.Printf("profiling %s under write load at concurrency %d", name, c)
	pprofAddr := freeAddr()
	s, err := b.startSystemWith(ctx, name, startOptions{pprof: pprofAddr})
	if err != nil {
		return err
	}
	defer s.close()
	if err := b.warm(ctx, s, false); err != nil {
		return err
	}
	type fetched struct {
		data []byte
		err  error
	}
	got := make(chan fetched, 1)
	var first, last sample
	cfg := load.Config{
		Clients: s.clientsFor(c), Concurrency: c, Carts: b.o.carts, Ramp: b.o.ramp,
		Duration: profileSeconds*time.Second + 200*time.Millisecond, Seed: 7,
		OnStart: func() {
			first = b.takeSample(ctx, s)
			go func() {
				data, err := fetchProfile(ctx, fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", pprofAddr, profileSeconds))
				got <- fetched{data, err}
			}()
		},
		OnEnd: func() { last = b.takeSample(ctx, s) },
	}
	res, err := load.Run(ctx, cfg)
	if err != nil {
		return err
	}
	f := <-got
	if err := b.stopSystem(ctx, s, ""); err != nil {
		return err
	}
	if f.err != nil {
		b.problem("CPU profile of %s: %v", name, f.err)
		return nil
	}
	if err := os.MkdirAll(b.o.resultsDir, 0o755); err != nil {
		return err
	}
	file := filepath.Join(b.o.resultsDir, name+"-write.pprof")
	if err := os.WriteFile(file, f.data, 0o644); err != nil {
		return err
	}
	p, err := analyseProfile(f.data)
	if err != nil {
		b.problem("CPU profile of %s: %v", name, err)
		return nil
	}
	p.System = name
	p.Cell = fmt.Sprintf("write, uniform, concurrency %d", c)
	p.Throughput = res.Throughput
	p.CPU, p.Journal = cellCPU(first, last), cellJournal(first, last)
	p.File = filepath.ToSlash(file)
	b.res.Profiles = append(b.res.Profiles, *p)
	log.Printf("  profiled %.1f CPU s in %.1f s (%.0f req/s)", p.CPUSeconds, p.Seconds, res.Throughput)
	return nil
}

func fetchProfile(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", url, res.Status)
	}
	return io.ReadAll(res.Body)
}

// stack is one profile sample: function names from the leaf up, and the
// CPU time it stands for.
type stack struct {
	funcs []string
	nanos int64
}

// analyseProfile decodes a CPU profile and sums it by component (which
// library the time was spent in) and by kind (system calls, garbage
// collection, scheduling, computing).
func analyseProfile(gz []byte) (*report.Profile, error) {
	stacks, duration, err := decodeProfile(gz)
	if err != nil {
		return nil, err
	}
	var total int64
	components, kinds := map[string]int64{}, map[string]int64{}
	flat, cum := map[string]int64{}, map[string]int64{}
	for _, s := range stacks {
		total += s.nanos
		components[component(s.funcs)] += s.nanos
		kinds[kind(s.funcs)] += s.nanos
		if len(s.funcs) > 0 {
			flat[s.funcs[0]] += s.nanos
		}
		seen := map[string]bool{}
		for _, f := range s.funcs {
			if !seen[f] {
				seen[f] = true
				cum[f] += s.nanos
			}
		}
	}
	if total == 0 {
		return nil, fmt.Errorf("the profile has no samples")
	}
	shares := func(m map[string]int64) []report.Share {
		var out []report.Share
		for name, ns := range m {
			out = append(out, report.Share{Name: name, Seconds: float64(ns) / 1e9, Share: float64(ns) / float64(total)})
		}
		slices.SortFunc(out, func(a, b report.Share) int {
			return cmp.Or(cmp.Compare(b.Seconds, a.Seconds), cmp.Compare(a.Name, b.Name))
		})
		return out
	}
	top := func(by map[string]int64) []report.FuncProfile {
		names := make([]string, 0, len(by))
		for n := range by {
			names = append(names, n)
		}
		slices.SortFunc(names, func(a, b string) int { return cmp.Or(cmp.Compare(by[b], by[a]), cmp.Compare(a, b)) })
		var out []report.FuncProfile
		for _, n := range names[:min(40, len(names))] {
			out = append(out, report.FuncProfile{
				Name: n, Flat: float64(flat[n]) / 1e9, FlatShare: float64(flat[n]) / float64(total),
				Cum: float64(cum[n]) / 1e9, CumShare: float64(cum[n]) / float64(total),
			})
		}
		return out
	}
	return &report.Profile{
		Seconds: duration.Seconds(), CPUSeconds: float64(total) / 1e9,
		Components: shares(components), Kinds: shares(kinds),
		TopFlat: top(flat), TopCum: top(cum),
	}, nil
}

// componentPrefixes name the libraries a sample's time is charged to: the
// innermost frame from one of them decides. Standard library frames (net,
// syscall, bufio, ...) are charged to the library that called them, so a
// socket write by gRPC's writer counts as gRPC.
var componentPrefixes = []struct{ prefix, name string }{
	{"google.golang.org/grpc", "gRPC and HTTP/2"},
	{"golang.org/x/net/http2", "gRPC and HTTP/2"},
	{"google.golang.org/protobuf", "protobuf encoding"},
	{"github.com/jackc/", "pgx (Postgres client)"},
	{"github.com/statefun-go/statefun/runtime", "statefun runtime"},
	{"github.com/statefun-go/statefun/examples", "generated code and handlers"},
	{"main.", "generated code and handlers"},
	{"github.com/prometheus/", "metrics"},
	{"connectrpc.com/", "HTTP gateway"},
}

func component(funcs []string) string {
	for _, f := range funcs {
		for _, c := range componentPrefixes {
			if strings.HasPrefix(f, c.prefix) {
				return c.name
			}
		}
	}
	switch {
	case has(funcs, "runtime.gcBgMarkWorker", "runtime.bgsweep", "runtime.bgscavenge"):
		return "Go runtime: garbage collector"
	case has(funcs, "runtime.schedule", "runtime.findRunnable", "runtime.mcall", "runtime.park_m"):
		return "Go runtime: scheduler"
	}
	return "Go runtime: other"
}

func kind(funcs []string) string {
	if len(funcs) == 0 {
		return "other"
	}
	leaf := funcs[0]
	switch {
	case has(funcs, "runtime.gcBgMarkWorker", "runtime.gcAssistAlloc", "runtime.bgsweep", "runtime.bgscavenge", "runtime.markrootSpans"):
		return "garbage collection"
	case strings.HasPrefix(leaf, "syscall.") || strings.HasPrefix(leaf, "internal/runtime/syscall.") || strings.HasPrefix(leaf, "runtime/internal/syscall."):
		return "system calls (socket reads and writes)"
	case leaf == "runtime.futex" || leaf == "runtime.usleep" || leaf == "runtime.osyield":
		return "thread sleep and wake-up (futex)"
	case strings.HasPrefix(leaf, "runtime.netpoll") || leaf == "runtime.epollwait":
		return "network poller"
	case has(funcs, "runtime.mallocgc"):
		return "memory allocation"
	case has(funcs, "runtime.schedule", "runtime.findRunnable"):
		return "goroutine scheduling"
	}
	return "computation"
}

func has(funcs []string, names ...string) bool {
	for _, f := range funcs {
		if slices.Contains(names, f) {
			return true
		}
	}
	return false
}

// decodeProfile reads the samples of a gzipped pprof profile (the
// profile.proto format) with protowire, which the module already has:
// the few fields needed do not justify a dependency.
func decodeProfile(gz []byte) ([]stack, time.Duration, error) {
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return nil, 0, fmt.Errorf("profile: %w", err)
	}
	data, err := io.ReadAll(zr)
	if err != nil {
		return nil, 0, fmt.Errorf("profile: %w", err)
	}
	type sample struct {
		locs   []uint64
		values []int64
	}
	var (
		samples     []sample
		sampleTypes []int64 // string index of each value's type
		strs        []string
		locations   = map[uint64][]uint64{} // location -> function ids, leaf first
		functions   = map[uint64]int64{}    // function -> string index of its name
		duration    int64
	)
	err = fields(data, func(num protowire.Number, typ protowire.Type, v uint64, b []byte) error {
		switch num {
		case 1: // sample_type
			return fields(b, func(n protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				if n == 1 {
					sampleTypes = append(sampleTypes, int64(v))
				}
				return nil
			})
		case 2: // sample
			var s sample
			err := fields(b, func(n protowire.Number, t protowire.Type, v uint64, b []byte) error {
				switch n {
				case 1:
					s.locs = appendVarints(s.locs, t, v, b)
				case 2:
					for _, x := range appendVarints(nil, t, v, b) {
						s.values = append(s.values, int64(x))
					}
				}
				return nil
			})
			samples = append(samples, s)
			return err
		case 4: // location
			var id uint64
			var funcs []uint64
			err := fields(b, func(n protowire.Number, _ protowire.Type, v uint64, b []byte) error {
				switch n {
				case 1:
					id = v
				case 4: // line: function_id
					return fields(b, func(n protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
						if n == 1 {
							funcs = append(funcs, v)
						}
						return nil
					})
				}
				return nil
			})
			locations[id] = funcs
			return err
		case 5: // function
			var id uint64
			var name int64
			err := fields(b, func(n protowire.Number, _ protowire.Type, v uint64, _ []byte) error {
				switch n {
				case 1:
					id = v
				case 2:
					name = int64(v)
				}
				return nil
			})
			functions[id] = name
			return err
		case 6: // string_table
			strs = append(strs, string(b))
		case 10: // duration_nanos
			duration = int64(v)
		}
		return nil
	})
	if err != nil {
		return nil, 0, fmt.Errorf("profile: %w", err)
	}
	// The CPU profile's values are (samples, nanoseconds); use the one
	// whose type is "cpu".
	value := len(sampleTypes) - 1
	for i, t := range sampleTypes {
		if t >= 0 && int(t) < len(strs) && strs[t] == "cpu" {
			value = i
		}
	}
	str := func(i int64) string {
		if i < 0 || int(i) >= len(strs) {
			return "?"
		}
		return strs[i]
	}
	out := make([]stack, 0, len(samples))
	for _, s := range samples {
		if value < 0 || value >= len(s.values) {
			continue
		}
		st := stack{nanos: s.values[value]}
		for _, l := range s.locs {
			for _, fn := range locations[l] {
				st.funcs = append(st.funcs, str(functions[fn]))
			}
		}
		out = append(out, st)
	}
	return out, time.Duration(duration), nil
}

// fields calls f for each field of a protobuf message: v holds varints
// and fixed values, b the bytes of length-delimited fields.
func fields(data []byte, f func(protowire.Number, protowire.Type, uint64, []byte) error) error {
	for len(data) > 0 {
		num, typ, n := protowire.ConsumeTag(data)
		if n < 0 {
			return protowire.ParseError(n)
		}
		data = data[n:]
		var v uint64
		var b []byte
		switch typ {
		case protowire.VarintType:
			v, n = protowire.ConsumeVarint(data)
		case protowire.Fixed64Type:
			v, n = protowire.ConsumeFixed64(data)
		case protowire.Fixed32Type:
			var x uint32
			x, n = protowire.ConsumeFixed32(data)
			v = uint64(x)
		case protowire.BytesType:
			b, n = protowire.ConsumeBytes(data)
		default:
			n = protowire.ConsumeFieldValue(num, typ, data)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		data = data[n:]
		if err := f(num, typ, v, b); err != nil {
			return err
		}
	}
	return nil
}

// appendVarints appends a repeated varint field's values, packed or not.
func appendVarints(dst []uint64, typ protowire.Type, v uint64, b []byte) []uint64 {
	if typ != protowire.BytesType {
		return append(dst, v)
	}
	for len(b) > 0 {
		x, n := protowire.ConsumeVarint(b)
		if n < 0 {
			return dst
		}
		dst = append(dst, x)
		b = b[n:]
	}
	return dst
}

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/statefun-go/statefun/bench/internal/procstat"
	"github.com/statefun-go/statefun/bench/pgproxy"
	"github.com/statefun-go/statefun/bench/report"
)

// sample is every counter a cell reads at the edges of its window.
type sample struct {
	at       time.Time
	server   float64 // CPU seconds of the system's process
	proxy    float64
	postgres float64
	self     float64
	machine  cpuTimes
	sockets  socketStats
	proxyCnt *pgproxy.Stats
	journal  *report.Journal
	cluster  *report.ClusterWork
}

// takeSample reads the counters for a system.
func (b *bench) takeSample(ctx context.Context, s *system) sample {
	smp := sample{at: time.Now()}
	for _, n := range s.nodes {
		smp.server += procstat.ProcessCPU(n.proc.pid())
	}
	if s.proxy != nil {
		smp.proxy = procstat.ProcessCPU(s.proxy.pid())
		if st, err := proxyStats(ctx, s.proxyStats); err == nil {
			smp.proxyCnt = &st
		} else {
			b.problem("read the proxy's counters: %v", err)
		}
	}
	if s.nodes[0].httpAddr != "" {
		c, err := readCounters(ctx, s.nodes)
		if err != nil {
			b.problem("read the metrics of %s: %v", s.name, err)
		} else {
			smp.journal, smp.cluster = &c.journal, &c.cluster
		}
	}
	smp.postgres = b.postgresCPU()
	smp.self = procstat.ProcessCPU(os.Getpid())
	smp.machine = machineCPU()
	if s.db != "" {
		var pids []int
		for _, n := range s.nodes {
			pids = append(pids, n.proc.pid())
		}
		st, err := tcpStats(ctx, s.dbPort, pids...)
		if err != nil {
			b.problem("read the TCP counters of %s: %v", s.name, err)
		}
		smp.sockets = st
	}
	return smp
}

// cellCPU turns two samples into cores used.
func cellCPU(a, z sample) report.CPU {
	secs := z.at.Sub(a.at).Seconds()
	return report.CPU{
		Server:   (z.server - a.server) / secs,
		Postgres: (z.postgres - a.postgres) / secs,
		Load:     (z.self - a.self) / secs,
		Proxy:    (z.proxy - a.proxy) / secs,
		SoftIRQ:  (z.machine.softirq - a.machine.softirq) / secs,
		Steal:    (z.machine.steal - a.machine.steal) / secs,
		Machine:  (z.machine.busy - a.machine.busy) / secs,
	}
}

// cellJournal turns two samples into the journal's work in the window.
func cellJournal(a, z sample) *report.Journal {
	if a.journal == nil || z.journal == nil {
		return nil
	}
	return &report.Journal{
		Batches:       z.journal.Batches - a.journal.Batches,
		Records:       z.journal.Records - a.journal.Records,
		CommitSeconds: z.journal.CommitSeconds - a.journal.CommitSeconds,
		Loads:         z.journal.Loads - a.journal.Loads,
	}
}

// cellCluster turns two samples into the cluster's work in the window.
func cellCluster(a, z sample) *report.ClusterWork {
	if a.cluster == nil || z.cluster == nil {
		return nil
	}
	d := z.cluster.Minus(*a.cluster)
	return &d
}

// counters are what a system's statefun servers count, summed over its
// nodes, and the shards each node holds.
type counters struct {
	journal report.Journal
	cluster report.ClusterWork
	shards  []int
}

// readCounters scrapes every node's /metrics.
func readCounters(ctx context.Context, nodes []*node) (counters, error) {
	var c counters
	for _, n := range nodes {
		m, err := procstat.Scrape(ctx, n.metricsURL())
		if err != nil {
			return c, err
		}
		if !m.Has("statefun_journal_batches_total") {
			return c, fmt.Errorf("%s has no statefun_journal_batches_total", n.metricsURL())
		}
		c.journal.Batches += int64(m.Sum("statefun_journal_batches_total"))
		c.journal.Records += int64(m.Sum("statefun_journal_records_total"))
		c.journal.CommitSeconds += m.Sum("statefun_journal_commit_seconds_total")
		c.journal.Loads += int64(m.Sum("statefun_entity_loads_total"))
		c.cluster.Nodes++
		c.cluster.Calls += int64(m.Sum("statefun_request_duration_seconds_count"))
		c.cluster.Forwards += int64(m.Sum("statefun_cluster_forwards_total"))
		c.cluster.ForwardRetries += int64(m.Sum("statefun_cluster_forward_retries_total"))
		c.cluster.Renewals += int64(m.Sum("statefun_cluster_lease_renewals_total"))
		c.cluster.RenewalFailures += int64(m.Sum("statefun_cluster_lease_renewal_failures_total"))
		c.cluster.Acquired += int64(m.Sum("statefun_cluster_leases_acquired_total"))
		c.cluster.HandedOff += int64(m.Sum("statefun_cluster_handoffs_total"))
		c.cluster.HandoffSeconds += m.Sum("statefun_cluster_handoff_seconds_total")
		c.shards = append(c.shards, int(m.Sum("statefun_cluster_shards_owned")))
	}
	return c, nil
}

// cellDB turns two samples into the database work of the window.
func cellDB(a, z sample) *report.DBWork {
	w := &report.DBWork{
		Connections:    z.sockets.conns,
		ClientSegments: z.sockets.segsOut - a.sockets.segsOut,
		ServerSegments: z.sockets.segsIn - a.sockets.segsIn,
		ClientBytes:    z.sockets.bytesSent - a.sockets.bytesSent,
		ServerBytes:    z.sockets.bytesReceived - a.sockets.bytesReceived,
	}
	if a.proxyCnt != nil && z.proxyCnt != nil {
		w.Proxy = &pgproxy.Stats{
			Connections:   z.proxyCnt.Connections - a.proxyCnt.Connections,
			RoundTrips:    z.proxyCnt.RoundTrips - a.proxyCnt.RoundTrips,
			Statements:    z.proxyCnt.Statements - a.proxyCnt.Statements,
			Syncs:         z.proxyCnt.Syncs - a.proxyCnt.Syncs,
			ClientBytes:   z.proxyCnt.ClientBytes - a.proxyCnt.ClientBytes,
			ServerBytes:   z.proxyCnt.ServerBytes - a.proxyCnt.ServerBytes,
			DelayedChunks: z.proxyCnt.DelayedChunks - a.proxyCnt.DelayedChunks,
			DelayNanos:    z.proxyCnt.DelayNanos - a.proxyCnt.DelayNanos,
			DelayMaxNanos: z.proxyCnt.DelayMaxNanos,
		}
	}
	return w
}

// postgresCPU sums the CPU seconds of the Postgres processes that work for
// the benchmark: the backends of its databases and the server's own
// background processes (WAL writer, checkpointer, ...). Backends of other
// databases, such as other test runs on a shared machine, are left out;
// their process titles name their database and client address.
func (b *bench) postgresCPU() float64 {
	return postgresProcessCPU(func(title string, client bool) bool {
		if !client {
			return true
		}
		for _, db := range b.databases {
			if strings.Contains(title, " "+db+" ") {
				return true
			}
		}
		return false
	})
}

// backendCPU sums the CPU seconds of the backends of one database.
func (b *bench) backendCPU(db string) float64 {
	return postgresProcessCPU(func(title string, client bool) bool {
		return client && strings.Contains(title, " "+db+" ")
	})
}

// postgresProcessCPU sums the CPU seconds of the Postgres processes that
// keep picks by their process title; client says whether the process
// serves a client connection (a backend) rather than being one of the
// server's own.
func postgresProcessCPU(keep func(title string, client bool) bool) float64 {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	var total float64
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		title, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.HasPrefix(title, []byte("postgres: ")) {
			continue
		}
		t := string(title)
		client := strings.Contains(t, "(") || strings.Contains(t, "[local]")
		if keep(t, client) {
			total += procstat.ProcessCPU(pid)
		}
	}
	return total
}

// cpuTimes are the machine's CPU seconds so far, all cores together,
// from the first line of /proc/stat (user nice system idle iowait irq
// softirq steal; guest time is already in user).
type cpuTimes struct {
	busy    float64 // everything but idle and iowait
	softirq float64 // packet processing, loopback included: charged to no process
	steal   float64 // taken by the hypervisor for other guests
}

func machineCPU() cpuTimes {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	if !sc.Scan() {
		return cpuTimes{}
	}
	fields := strings.Fields(sc.Text())
	var t cpuTimes
	for i, f := range fields[1:min(len(fields), 9)] {
		v, _ := strconv.ParseFloat(f, 64)
		v /= procstat.ClockTicks
		switch i {
		case 3, 4: // idle, iowait
			continue
		case 6:
			t.softirq = v
		case 7:
			t.steal = v
		}
		t.busy += v
	}
	return t
}

// socketStats sums the kernel's TCP counters over a process's connections
// to one port.
type socketStats struct {
	conns                    int
	segsOut, segsIn          int64 // data segments sent and received
	bytesSent, bytesReceived int64
}

// tcpStats reads the counters with ss(8): -t TCP, -i internal info
// (tcp_info), -n numeric, -p owning process, -H no header.
func tcpStats(ctx context.Context, port int, pids ...int) (socketStats, error) {
	out, err := exec.CommandContext(ctx, "ss", "-tinpH", "state", "established", fmt.Sprintf("( dport = :%d )", port)).Output()
	if err != nil {
		return socketStats{}, fmt.Errorf("ss: %w", err)
	}
	return parseSS(string(out), pids...), nil
}

// parseSS sums the counters of the sockets of pids in the output of ss
// -tinpH: a line per socket naming its process, then an indented line of
// key:value counters.
func parseSS(out string, pids ...int) socketStats {
	var st socketStats
	mine := false
	for _, line := range strings.Split(out, "\n") {
		if line == "" {
			continue
		}
		if line[0] != ' ' && line[0] != '\t' {
			mine = false
			for _, pid := range pids {
				if strings.Contains(line, fmt.Sprintf("pid=%d,", pid)) {
					mine = true
				}
			}
			if mine {
				st.conns++
			}
			continue
		}
		if !mine {
			continue
		}
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, ":")
			if !ok {
				continue
			}
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				continue
			}
			switch k {
			case "data_segs_out":
				st.segsOut += n
			case "data_segs_in":
				st.segsIn += n
			case "bytes_sent":
				st.bytesSent += n
			case "bytes_received":
				st.bytesReceived += n
			}
		}
	}
	return st
}

func proxyStats(ctx context.Context, url string) (pgproxy.Stats, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return pgproxy.Stats{}, err
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return pgproxy.Stats{}, err
	}
	defer res.Body.Close()
	var st pgproxy.Stats
	return st, json.NewDecoder(res.Body).Decode(&st)
}

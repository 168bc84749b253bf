package statefun

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// metrics are the Prometheus metrics a server exports on /metrics.
type metrics struct {
	registry     *prometheus.Registry
	requests     *prometheus.HistogramVec
	batchRecords prometheus.Histogram
	commitTime   *prometheus.HistogramVec
	// requestsBy caches the requests histogram's children by method
	// (*methodObservers): WithLabelValues hashes both labels and looks
	// the child up under a lock on every call.
	requestsBy sync.Map
}

// methodObservers are one method's children of the requests histogram,
// by status code, each created on first use so that /metrics shows only
// the codes that happened.
type methodObservers [codes.Unauthenticated + 1]atomic.Pointer[prometheus.Observer]

// newMetrics creates the metrics; register attaches the runtime's once it
// exists, because the runtime reports batches through observeBatch.
func newMetrics() *metrics {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := &metrics{
		registry: reg,
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "statefun_request_duration_seconds",
			Help:    "Time to serve a gRPC request, by method and status code, including the wait for durability.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"method", "code"}),
		batchRecords: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "statefun_journal_batch_records",
			Help:    "Events and values per store transaction (group commit batch size).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 13),
		}),
		commitTime: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "statefun_journal_commit_duration_seconds",
			Help:    "Time of one store transaction, by outcome.",
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.requests, m.batchRecords, m.commitTime)
	return m
}

func (m *metrics) register(rt *Runtime) {
	m.registry.MustRegister(&runtimeCollector{rt: rt})
}

func (m *metrics) observeBatch(records int, took time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.batchRecords.Observe(float64(records))
	m.commitTime.WithLabelValues(outcome).Observe(took.Seconds())
}

// unaryInterceptor records every request's latency and status code.
func (m *metrics) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	res, err := handler(ctx, req)
	m.requestObserver(info.FullMethod, status.Code(err)).Observe(time.Since(start).Seconds())
	return res, err
}

// requestObserver returns the child of the requests histogram for method
// and code. The methods are those the server registered (gRPC refuses the
// others before interceptors run), so the cache is bounded.
func (m *metrics) requestObserver(method string, code codes.Code) prometheus.Observer {
	if code >= codes.Code(len(methodObservers{})) {
		return m.requests.WithLabelValues(method, code.String())
	}
	v, ok := m.requestsBy.Load(method)
	if !ok {
		v, _ = m.requestsBy.LoadOrStore(method, new(methodObservers))
	}
	slot := &v.(*methodObservers)[code]
	if o := slot.Load(); o != nil {
		return *o
	}
	o := m.requests.WithLabelValues(method, code.String())
	slot.Store(&o)
	return o
}

// runtimeCollector reads the runtime's counters at scrape time, so the hot
// path pays nothing for them.
type runtimeCollector struct{ rt *Runtime }

var (
	descCached     = prometheus.NewDesc("statefun_entities_cached", "Entities held in memory.", []string{"entity_type"}, nil)
	descHits       = prometheus.NewDesc("statefun_entity_cache_hits_total", "Requests served from an entity already in memory.", []string{"entity_type"}, nil)
	descLoads      = prometheus.NewDesc("statefun_entity_loads_total", "Entities loaded from the store.", []string{"entity_type"}, nil)
	descEvictions  = prometheus.NewDesc("statefun_entity_evictions_total", "Entities passivated (dropped from memory).", []string{"entity_type"}, nil)
	descResets     = prometheus.NewDesc("statefun_entity_resets_total", "Entities dropped from memory after a failed commit, a fencing conflict or a panic; each is logged.", []string{"entity_type"}, nil)
	descBatches    = prometheus.NewDesc("statefun_journal_batches_total", "Store transactions written by the journal writer.", nil, nil)
	descRecords    = prometheus.NewDesc("statefun_journal_records_total", "Events and values written.", nil, nil)
	descFailed     = prometheus.NewDesc("statefun_journal_failed_batches_total", "Store transactions that failed.", nil, nil)
	descConflicts  = prometheus.NewDesc("statefun_journal_conflicts_total", "Transactions that hit an entity another writer changed (fencing).", nil, nil)
	descCommitTime = prometheus.NewDesc("statefun_journal_commit_seconds_total", "Time spent in store commits; divide by batches for the mean commit latency.", nil, nil)
	descPending    = prometheus.NewDesc("statefun_journal_pending", "Commands whose changes are not yet durable.", nil, nil)
	descFenced     = prometheus.NewDesc("statefun_journal_fenced_batches_total", "Transactions refused because this node lost a shard's lease.", nil, nil)

	descShards          = prometheus.NewDesc("statefun_cluster_shards_owned", "Shards this node holds the lease of and serves.", nil, nil)
	descMembers         = prometheus.NewDesc("statefun_cluster_members", "Live nodes of the cluster, as this node last saw them.", nil, nil)
	descRenewals        = prometheus.NewDesc("statefun_cluster_lease_renewals_total", "Heartbeats that renewed this node's leases.", nil, nil)
	descRenewalFailures = prometheus.NewDesc("statefun_cluster_lease_renewal_failures_total", "Heartbeats that failed; leases run out if they keep failing.", nil, nil)
	descAcquired        = prometheus.NewDesc("statefun_cluster_leases_acquired_total", "Shard leases this node took.", nil, nil)
	descLost            = prometheus.NewDesc("statefun_cluster_leases_lost_total", "Shard leases another node took from this one after they lapsed.", nil, nil)
	descHandoffs        = prometheus.NewDesc("statefun_cluster_handoffs_total", "Shards this node handed off (drained, then released).", nil, nil)
	descHandoffTime     = prometheus.NewDesc("statefun_cluster_handoff_seconds_total", "Time spent handing shards off; divide by handoffs for the mean.", nil, nil)
	descForwards        = prometheus.NewDesc("statefun_cluster_forwards_total", "Calls forwarded to the node that owns their entity.", nil, nil)
	descForwardRetries  = prometheus.NewDesc("statefun_cluster_forward_retries_total", "Forwarded calls routed again because the owner had moved.", nil, nil)

	descTimersFired   = prometheus.NewDesc("statefun_timers_fired_total", "Timer deliveries that their target accepted.", nil, nil)
	descTimersRetried = prometheus.NewDesc("statefun_timers_retried_total", "Timer deliveries that failed and are retried with backoff; each is logged.", nil, nil)
	descTimersRefused = prometheus.NewDesc("statefun_timers_refused_total", "Timers their target refused for good (not retried); each is logged.", nil, nil)

	descWorkflowsStarted   = prometheus.NewDesc("statefun_workflows_started_total", "Workflows started on this node.", []string{"workflow_type"}, nil)
	descWorkflowSteps      = prometheus.NewDesc("statefun_workflow_steps_total", "Workflow step attempts whose outcome this node stored, by outcome: done (the step chose what comes next) or failed (an error, a timeout or a panic).", []string{"workflow_type", "outcome"}, nil)
	descWorkflowSignals    = prometheus.NewDesc("statefun_workflow_signals_total", "Signals handled by workflows on this node.", []string{"workflow_type"}, nil)
	descWorkflowsEnded     = prometheus.NewDesc("statefun_workflows_ended_total", "Workflows that ended on this node, by phase: completed or failed.", []string{"workflow_type", "phase"}, nil)
	descPublished          = prometheus.NewDesc("statefun_published_total", "Entity events the brokers acknowledged, from every publisher.", nil, nil)
	descPublishFailed      = prometheus.NewDesc("statefun_publish_failures_total", "Publishes that failed and are tried again; each is logged.", nil, nil)
	descSubscribed         = prometheus.NewDesc("statefun_subscribed_messages_total", "Broker messages handled by subscriptions, by outcome: handled (the call succeeded), skipped (another ce-type), retried, dead_lettered, dead_letter_failed.", []string{"outcome"}, nil)
	descDenied             = prometheus.NewDesc("statefun_access_denied_total", "Calls refused before their handler ran, by method and code: unauthenticated (no valid token), permission_denied (an access rule), resource_exhausted (a rate limit); refusals are logged at a bounded rate.", []string{"method", "code"}, nil)
	descWorkflowStepsInRun = prometheus.NewDesc("statefun_workflow_steps_running", "Workflow step attempts running on this node now.", []string{"workflow_type"}, nil)
)

func (c *runtimeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descCached, descHits, descLoads, descEvictions, descResets, descBatches, descRecords, descFailed, descConflicts, descCommitTime, descPending, descFenced,
		descShards, descMembers, descRenewals, descRenewalFailures, descAcquired, descLost, descHandoffs, descHandoffTime, descForwards, descForwardRetries,
		descTimersFired, descTimersRetried, descTimersRefused,
		descWorkflowsStarted, descWorkflowSteps, descWorkflowSignals, descWorkflowsEnded, descWorkflowStepsInRun,
		descPublished, descPublishFailed, descSubscribed, descDenied} {
		ch <- d
	}
}

func (c *runtimeCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.rt.Stats()
	for _, h := range s.Entities {
		ch <- prometheus.MustNewConstMetric(descCached, prometheus.GaugeValue, float64(h.Cached), h.EntityType)
		ch <- prometheus.MustNewConstMetric(descHits, prometheus.CounterValue, float64(h.Hits), h.EntityType)
		ch <- prometheus.MustNewConstMetric(descLoads, prometheus.CounterValue, float64(h.Loads), h.EntityType)
		ch <- prometheus.MustNewConstMetric(descEvictions, prometheus.CounterValue, float64(h.Evictions), h.EntityType)
		ch <- prometheus.MustNewConstMetric(descResets, prometheus.CounterValue, float64(h.Resets), h.EntityType)
	}
	j := s.Journal
	ch <- prometheus.MustNewConstMetric(descBatches, prometheus.CounterValue, float64(j.Batches))
	ch <- prometheus.MustNewConstMetric(descRecords, prometheus.CounterValue, float64(j.Records))
	ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(j.FailedBatches))
	ch <- prometheus.MustNewConstMetric(descConflicts, prometheus.CounterValue, float64(j.Conflicts))
	ch <- prometheus.MustNewConstMetric(descCommitTime, prometheus.CounterValue, j.CommitDuration.Seconds())
	ch <- prometheus.MustNewConstMetric(descPending, prometheus.GaugeValue, float64(j.Pending))
	ch <- prometheus.MustNewConstMetric(descFenced, prometheus.CounterValue, float64(j.Fenced))
	for _, a := range s.Access {
		ch <- prometheus.MustNewConstMetric(descDenied, prometheus.CounterValue, float64(a.Unauthenticated), a.Method, "unauthenticated")
		ch <- prometheus.MustNewConstMetric(descDenied, prometheus.CounterValue, float64(a.PermissionDenied), a.Method, "permission_denied")
		ch <- prometheus.MustNewConstMetric(descDenied, prometheus.CounterValue, float64(a.RateLimited), a.Method, "resource_exhausted")
	}
	cs := s.Cluster
	ch <- prometheus.MustNewConstMetric(descShards, prometheus.GaugeValue, float64(cs.ShardsHeld))
	ch <- prometheus.MustNewConstMetric(descMembers, prometheus.GaugeValue, float64(cs.Members))
	ch <- prometheus.MustNewConstMetric(descRenewals, prometheus.CounterValue, float64(cs.Renewals))
	ch <- prometheus.MustNewConstMetric(descRenewalFailures, prometheus.CounterValue, float64(cs.RenewalFailures))
	ch <- prometheus.MustNewConstMetric(descAcquired, prometheus.CounterValue, float64(cs.Acquired))
	ch <- prometheus.MustNewConstMetric(descLost, prometheus.CounterValue, float64(cs.Lost))
	ch <- prometheus.MustNewConstMetric(descHandoffs, prometheus.CounterValue, float64(cs.HandedOff))
	ch <- prometheus.MustNewConstMetric(descHandoffTime, prometheus.CounterValue, cs.HandoffTime.Seconds())
	ch <- prometheus.MustNewConstMetric(descForwards, prometheus.CounterValue, float64(cs.Forwards))
	ch <- prometheus.MustNewConstMetric(descForwardRetries, prometheus.CounterValue, float64(cs.ForwardRetries))
	ts := s.Timers
	ch <- prometheus.MustNewConstMetric(descTimersFired, prometheus.CounterValue, float64(ts.Fired))
	ch <- prometheus.MustNewConstMetric(descTimersRetried, prometheus.CounterValue, float64(ts.Retried))
	ch <- prometheus.MustNewConstMetric(descTimersRefused, prometheus.CounterValue, float64(ts.Refused))
	ev := s.Eventing
	ch <- prometheus.MustNewConstMetric(descPublished, prometheus.CounterValue, float64(ev.Published))
	ch <- prometheus.MustNewConstMetric(descPublishFailed, prometheus.CounterValue, float64(ev.PublishFailed))
	for outcome, n := range map[string]uint64{"handled": ev.Handled, "skipped": ev.Skipped, "retried": ev.Retried, "dead_lettered": ev.DeadLettered, "dead_letter_failed": ev.DeadLetterFail} {
		ch <- prometheus.MustNewConstMetric(descSubscribed, prometheus.CounterValue, float64(n), outcome)
	}
	for _, w := range s.Workflows {
		ch <- prometheus.MustNewConstMetric(descWorkflowsStarted, prometheus.CounterValue, float64(w.Started), w.WorkflowType)
		ch <- prometheus.MustNewConstMetric(descWorkflowSteps, prometheus.CounterValue, float64(w.StepsDone), w.WorkflowType, "done")
		ch <- prometheus.MustNewConstMetric(descWorkflowSteps, prometheus.CounterValue, float64(w.StepsFailed), w.WorkflowType, "failed")
		ch <- prometheus.MustNewConstMetric(descWorkflowSignals, prometheus.CounterValue, float64(w.Signals), w.WorkflowType)
		ch <- prometheus.MustNewConstMetric(descWorkflowsEnded, prometheus.CounterValue, float64(w.Completed), w.WorkflowType, "completed")
		ch <- prometheus.MustNewConstMetric(descWorkflowsEnded, prometheus.CounterValue, float64(w.Failed), w.WorkflowType, "failed")
		ch <- prometheus.MustNewConstMetric(descWorkflowStepsInRun, prometheus.GaugeValue, float64(w.Running), w.WorkflowType)
	}
}

package refs

import (
	"context"
	"errors"
	"time"

	"github.com/refkeeper/refkeeper/gitops"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics counts what the domain does to refs. A nil *Metrics counts
// nothing, so tests and tools may leave it out.
type Metrics struct {
	created       prometheus.Counter
	deleted       prometheus.Counter
	adopted       prometheus.Counter
	restored      prometheus.Counter
	sweepDuration prometheus.Histogram
	sweepFailures prometheus.Counter
	writeFailures *prometheus.CounterVec
	txRefs        *prometheus.HistogramVec
	txSeconds     *prometheus.HistogramVec
}

// NewMetrics registers the domain's metrics on reg, including gauges of pins
// by state and of the oldest pinned pin's age, read from store at each scrape.
func NewMetrics(reg prometheus.Registerer, store *Store, clock Clock) *Metrics {
	m := &Metrics{
		created: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refkeeper_refs_created_total", Help: "Pipeline refs created.",
		}),
		deleted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refkeeper_refs_deleted_total", Help: "Pipeline refs deleted.",
		}),
		adopted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refkeeper_refs_adopted_total", Help: "Pipeline refs found without a pin and tracked for max-age.",
		}),
		restored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refkeeper_refs_restored_total", Help: "Refs of live pins that had vanished and were re-created.",
		}),
		sweepDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "refkeeper_sweep_duration_seconds", Help: "Duration of GC sweeps.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		sweepFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refkeeper_sweep_project_failures_total", Help: "Projects a sweep could not finish (retried next sweep).",
		}),
		writeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refkeeper_ref_write_failures_total",
			Help: "Ref creates and deletes that failed and changed nothing, by reason (locked, disk_full, redis, git).",
		}, []string{"reason"}),
		txRefs: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "refkeeper_git_transaction_refs",
			Help:    "Refs per git transaction, by kind (create: pins arriving together share one; delete: a sweep batch or one deletion).",
			Buckets: prometheus.ExponentialBuckets(1, 2, 15),
		}, []string{"kind"}),
		txSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "refkeeper_git_transaction_seconds", Help: "Duration of git transactions that write refs, by kind.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}, []string{"kind"}),
	}
	if clock == nil {
		clock = SystemClock{}
	}
	for _, reason := range []string{"locked", "disk_full", "redis", "git"} {
		m.writeFailures.WithLabelValues(reason) // present at 0 from the start
	}
	reg.MustRegister(m.created, m.deleted, m.adopted, m.restored, m.sweepDuration, m.sweepFailures, m.writeFailures,
		m.txRefs, m.txSeconds,
		newPinCollector(store, clock))
	return m
}

// Transaction observes one git transaction; it makes Metrics a
// gitops.TransactionObserver.
func (m *Metrics) Transaction(kind string, refs int, took time.Duration, _ error) {
	if m == nil {
		return
	}
	m.txRefs.WithLabelValues(kind).Observe(float64(refs))
	m.txSeconds.WithLabelValues(kind).Observe(took.Seconds())
}

func (m *Metrics) refsCreated(n int) {
	if m != nil && n > 0 {
		m.created.Add(float64(n))
	}
}

func (m *Metrics) refsDeleted(n int) {
	if m != nil && n > 0 {
		m.deleted.Add(float64(n))
	}
}

// writeFailed counts a ref write that git refused for a transient reason.
func (m *Metrics) writeFailed(err error) {
	if m == nil {
		return
	}
	var locked *gitops.LockedError
	var full *gitops.DiskFullError
	var check *gitops.CheckError
	reason := "git"
	switch {
	case errors.As(err, &locked):
		reason = "locked"
	case errors.As(err, &full):
		reason = "disk_full"
	case errors.As(err, &check):
		reason = "redis" // the records could not be read under the ref locks
	}
	m.writeFailures.WithLabelValues(reason).Inc()
}

func (m *Metrics) refsAdopted(n int) {
	if m != nil && n > 0 {
		m.adopted.Add(float64(n))
	}
}

func (m *Metrics) refsRestored(n int) {
	if m != nil && n > 0 {
		m.restored.Add(float64(n))
	}
}

func (m *Metrics) sweepDone(d time.Duration, failedProjects int) {
	if m != nil {
		m.sweepDuration.Observe(d.Seconds())
		m.sweepFailures.Add(float64(failedProjects))
	}
}

// pinCollector answers the pin counts from Redis, so every replica reports
// the same shared truth. A scrape costs no Redis call while its snapshot is
// younger than snapshotAge; a refresh reads every project in one pipelined
// round trip per snapshotChunk projects. So a scrape's cost does not grow
// with the projects, and a refresh's round trips grow by one per thousand.
type pinCollector struct {
	store     *Store
	clock     Clock
	snapshots Cache[struct{}, pinSnapshot]
}

// pinSnapshot is what a scrape shows: the pin counts and the oldest pinned
// pin as last read, and the error of the last read (which keeps the counts
// read before it).
type pinSnapshot struct {
	totals map[State]int64
	oldest time.Time
	err    error
}

func newPinCollector(store *Store, clock Clock) *pinCollector {
	return &pinCollector{store: store, clock: clock}
}

// snapshotAge is how old the pin counts a scrape shows may be. Scrapers
// come every 15 to 60 s; the counts move with pipelines, over minutes.
const snapshotAge = 15 * time.Second

// snapshotChunk is how many projects one pipelined round trip reads.
const snapshotChunk = 1000

var (
	pinsDesc   = prometheus.NewDesc("refkeeper_pins", "Pins by state, over all projects.", []string{"state"}, nil)
	oldestDesc = prometheus.NewDesc("refkeeper_oldest_pinned_age_seconds",
		"Age of the oldest pin in state pinned (0 when there is none).", nil, nil)
	scrapeErrDesc = prometheus.NewDesc("refkeeper_pins_scrape_error",
		"1 when the pin counts could not be read from Redis for this scrape.", nil, nil)
)

func (c *pinCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- pinsDesc
	ch <- oldestDesc
	ch <- scrapeErrDesc
}

func (c *pinCollector) Collect(ch chan<- prometheus.Metric) {
	snap, _ := c.snapshots.Get(struct{}{}, snapshotAge, func(prev pinSnapshot) (pinSnapshot, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		totals, oldest, err := c.read(ctx)
		if err != nil {
			prev.err = err
			return prev, nil
		}
		return pinSnapshot{totals: totals, oldest: oldest}, nil
	})
	totals, oldest, err := snap.totals, snap.oldest, snap.err
	failed := 0.0
	if err != nil {
		failed = 1
	} else {
		for _, st := range []State{StatePinned, StateFinished, StateDeleted} {
			ch <- prometheus.MustNewConstMetric(pinsDesc, prometheus.GaugeValue, float64(totals[st]), string(st))
		}
		age := 0.0
		if !oldest.IsZero() {
			age = c.clock.Now().Sub(oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
	}
	ch <- prometheus.MustNewConstMetric(scrapeErrDesc, prometheus.GaugeValue, failed)
}

func (c *pinCollector) read(ctx context.Context) (map[State]int64, time.Time, error) {
	projects, err := c.store.Projects(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	totals := map[State]int64{}
	var oldest time.Time
	for start := 0; start < len(projects); start += snapshotChunk {
		stats, err := c.store.projectStats(ctx, projects[start:min(start+snapshotChunk, len(projects))])
		if err != nil {
			return nil, time.Time{}, err
		}
		for _, st := range stats {
			for state, n := range st.counts {
				totals[state] += n
			}
			if !st.oldest.IsZero() && (oldest.IsZero() || st.oldest.Before(oldest)) {
				oldest = st.oldest
			}
		}
	}
	return totals, oldest, nil
}

package mirrors

import (
	"context"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
)

// Housekeeping runs git's housekeeping in every mirror (never in a local
// project: something else keeps those), at most once per mirror per
// Interval across every replica sharing the Redis, and never in one mirror
// on two replicas at once: each run holds the mirror's lease, which lives
// as long as the run's bound plus a margin (the git process is killed at
// its bound, so a lease cannot end while its run goes on), and leaves a
// marker for the rest of the interval.
type Housekeeping struct {
	Repos *gitops.Root
	Store *refs.Store
	// Interval is the least time between two runs in one mirror.
	Interval time.Duration
	// Options tune git's gc (its bound, its thresholds).
	Options gitops.HousekeepingOptions
	// Metrics counts runs and failures; nil counts nothing.
	Metrics *HousekeepingMetrics
	Logger  *slog.Logger
}

// HousekeepingResult is what one pass over the mirrors did.
type HousekeepingResult struct {
	Ran     int // mirrors housekept by this pass
	Skipped int // housekept within the interval, or by another replica now
	Failed  int
}

func (h *Housekeeping) logger() *slog.Logger {
	if h.Logger != nil {
		return h.Logger
	}
	return slog.Default()
}

// leaseMargin is how much longer a housekeeping lease lives than its run's
// bound: the kill grace and a margin for the Redis calls around it.
const leaseMargin = 30 * time.Second

// RunAll housekeeps every mirror in place that is due. A failing mirror is
// logged and counted; the error is returned only when the mirrors could not
// be listed.
func (h *Housekeeping) RunAll(ctx context.Context) (HousekeepingResult, error) {
	var res HousekeepingResult
	names, err := h.Repos.Projects(ctx)
	if err != nil {
		return res, &refs.UnavailableError{Op: "listing projects", Cause: err}
	}
	for _, name := range names {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		pi, err := h.Repos.Project(name)
		if err != nil || !pi.Mirror || pi.Staged {
			continue
		}
		ran, err := h.Run(ctx, name)
		switch {
		case err != nil:
			res.Failed++
			h.logger().Warn("mirror housekeeping failed; the next interval tries again", "project", string(name), "err", err)
		case ran:
			res.Ran++
		default:
			res.Skipped++
		}
	}
	return res, nil
}

// acquireHousekeepingScript takes the lease unless the mirror was housekept
// within the interval (KEYS[2] marks that) or the lease is held.
var acquireHousekeepingScript = refs.NewLeaseScript(`
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if take() then return 1 end
return 0
`)

// releaseHousekeepingScript marks the interval as done (after a success:
// ARGV[3] "1", ARGV[4] the interval in ms) and lets the lease go if it is
// still this holder's.
var releaseHousekeepingScript = refs.NewLeaseScript(`
if ARGV[3] == '1' then redis.call('SET', KEYS[2], '1', 'PX', ARGV[4]) end
drop()
return 1
`)

// Run housekeeps one mirror if it is due and no other replica does it now;
// ran says whether this call did. A local project is *gitops.NotMirrorError.
func (h *Housekeeping) Run(ctx context.Context, name gitops.ProjectName) (ran bool, err error) {
	bound := h.Options.Timeout
	if bound <= 0 {
		bound = gitops.DefaultHousekeepingTimeout
	}
	pi, err := h.Repos.Project(name)
	if err != nil {
		return false, err
	}
	if !pi.Mirror {
		return false, &gitops.NotMirrorError{Project: name}
	}
	key, done := h.Store.Keys.HousekeepingLease(name)
	lease := refs.NewLease(h.Store.Client, key, bound+leaseMargin)
	n, err := lease.Run(ctx, acquireHousekeepingScript, []string{done}).Int()
	if err != nil {
		return false, refs.Unavailable("taking housekeeping lease", err)
	}
	if n == 0 {
		return false, nil
	}
	start := time.Now()
	err = h.Repos.HousekeepMirror(ctx, name, h.Options)
	h.Metrics.ran(time.Since(start), err)
	rctx, cancel := refs.Settling(ctx)
	defer cancel()
	ok := "0"
	if err == nil {
		ok = "1"
	}
	if rerr := lease.Run(rctx, releaseHousekeepingScript, []string{done}, ok, h.Interval.Milliseconds()).Err(); rerr != nil {
		h.logger().Warn("releasing a housekeeping lease failed; it expires by itself", "project", string(name), "err", rerr)
	}
	if err != nil {
		return true, &refs.UnavailableError{Op: "housekeeping " + string(name), Cause: err}
	}
	return true, nil
}

// HousekeepingMetrics are the mirrors' metrics: housekeeping runs and
// failures, and per mirror in place its size on disk and its last fetch.
// The per-mirror series exist only for mirrors on disk now, so their count
// is bounded by the mirrors; they are read from disk at most once per
// mirrorSnapshotAge, whatever the scrape rate.
type HousekeepingMetrics struct {
	runs      prometheus.Counter
	failures  prometheus.Counter
	seconds   prometheus.Histogram
	collector *mirrorCollector
}

// NewHousekeepingMetrics registers the mirrors' metrics on reg.
func NewHousekeepingMetrics(reg prometheus.Registerer, repos *gitops.Root) *HousekeepingMetrics {
	m := &HousekeepingMetrics{
		runs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refkeeper_mirror_housekeeping_runs_total", Help: "Housekeeping runs (git gc --auto) in mirrors.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "refkeeper_mirror_housekeeping_failures_total", Help: "Housekeeping runs in mirrors that failed (tried again next interval).",
		}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "refkeeper_mirror_housekeeping_seconds", Help: "Duration of housekeeping runs in mirrors.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 16),
		}),
	}
	m.collector = &mirrorCollector{repos: repos, maxAge: mirrorSnapshotAge}
	reg.MustRegister(m.runs, m.failures, m.seconds, m.collector)
	return m
}

// MirrorSizes answers each mirror's size on disk (its objects) from the
// snapshot /metrics shows, so a page showing them costs no more reads of
// the disk than the scrapes do.
func (m *HousekeepingMetrics) MirrorSizes() map[refs.Project]int64 {
	sizes := map[refs.Project]int64{}
	for _, st := range m.collector.snapshot() {
		sizes[st.Name] = st.SizeBytes
	}
	return sizes
}

func (m *HousekeepingMetrics) ran(took time.Duration, err error) {
	if m == nil {
		return
	}
	m.runs.Inc()
	m.seconds.Observe(took.Seconds())
	if err != nil {
		m.failures.Inc()
	}
}

// mirrorSnapshotAge is how old the mirror sizes a scrape shows may be: a
// refresh reads every file name in every mirror's object directory.
const mirrorSnapshotAge = time.Minute

var (
	mirrorSizeDesc = prometheus.NewDesc("refkeeper_mirror_size_bytes",
		"Size of a mirror's objects on disk (loose objects and packs).", []string{"project"}, nil)
	mirrorFetchDesc = prometheus.NewDesc("refkeeper_mirror_last_fetch_timestamp_seconds",
		"When the last fetch into a mirror succeeded (Unix time; 0: never).", []string{"project"}, nil)
)

// mirrorCollector answers the mirrors' sizes and last fetches from a
// snapshot no older than maxAge.
type mirrorCollector struct {
	repos  *gitops.Root
	maxAge time.Duration

	snapshots refs.Cache[struct{}, []gitops.MirrorStat]
}

func (c *mirrorCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- mirrorSizeDesc
	ch <- mirrorFetchDesc
}

func (c *mirrorCollector) Collect(ch chan<- prometheus.Metric) {
	for _, st := range c.snapshot() {
		fetched := 0.0
		if !st.FetchedAt.IsZero() {
			fetched = float64(st.FetchedAt.UnixNano()) / 1e9
		}
		ch <- prometheus.MustNewConstMetric(mirrorSizeDesc, prometheus.GaugeValue, float64(st.SizeBytes), string(st.Name))
		ch <- prometheus.MustNewConstMetric(mirrorFetchDesc, prometheus.GaugeValue, fetched, string(st.Name))
	}
}

// snapshot answers the mirrors' stats, read again when older than maxAge.
func (c *mirrorCollector) snapshot() []gitops.MirrorStat {
	stats, _ := c.snapshots.Get(struct{}{}, c.maxAge, func(prev []gitops.MirrorStat) ([]gitops.MirrorStat, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		stats, err := c.repos.MirrorStats(ctx)
		if err != nil {
			return prev, nil // the sizes read before stand until the next refresh
		}
		return stats, nil
	})
	return stats
}

package jobs

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// gauge is the value of the series name{queue, more labels} in families, and
// whether it is there.
func gauge(families []*dto.MetricFamily, name, queue string, labels map[string]string) (float64, bool) {
	for _, f := range families {
		if f.GetName() != name {
			continue
		}
	next:
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if got["queue"] != queue {
				continue
			}
			for k, v := range labels {
				if got[k] != v {
					continue next
				}
			}
			if m.GetGauge() != nil {
				return m.GetGauge().GetValue(), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// The queues' state in Redis shows on the registry as asynq's collector
// reports it: tasks waiting for their time count as scheduled, in the
// queue's size.
func TestQueueMetricsReportTheQueue(t *testing.T) {
	r := testdata.StartRedis(t)
	reg := prometheus.NewRegistry()
	RegisterQueueMetrics(reg, r.Client(t))
	s := &ExpiryScheduler{Client: asynq.NewClientFromRedisClient(r.Client(t))}
	later := time.Now().Add(time.Hour)
	for _, p := range []string{"group/app", "group/other"} {
		if err := s.ScheduleExpiry(t.Context(), refs.Project(p), later); err != nil {
			t.Fatal(err)
		}
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if v, ok := gauge(families, "asynq_tasks_enqueued_total", DefaultQueue, map[string]string{"state": "scheduled"}); !ok || v != 2 {
		t.Errorf("asynq_tasks_enqueued_total{state=scheduled} = %v (present %v), want 2", v, ok)
	}
	if v, ok := gauge(families, "asynq_queue_size", DefaultQueue, nil); !ok || v != 2 {
		t.Errorf("asynq_queue_size = %v (present %v), want 2", v, ok)
	}
	if _, ok := gauge(families, "asynq_queue_latency_seconds", DefaultQueue, nil); !ok {
		t.Error("no asynq_queue_latency_seconds for the queue")
	}
}

// With Redis gone, a scrape still answers within the bound, with no asynq
// series and no error, so the rest of /metrics (which says Redis is
// unreachable) gets through.
func TestQueueMetricsBoundedWithoutRedis(t *testing.T) {
	r := testdata.StartRedis(t)
	reg := prometheus.NewRegistry()
	RegisterQueueMetrics(reg, r.Client(t))
	s := &ExpiryScheduler{Client: asynq.NewClientFromRedisClient(r.Client(t))}
	if err := s.ScheduleExpiry(t.Context(), "group/app", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	r.Stop(t)
	for range 3 { // again while the first collection may still be waiting on Redis
		start := time.Now()
		families, err := reg.Gather()
		took := time.Since(start)
		if err != nil {
			t.Fatalf("gather without Redis: %v", err)
		}
		if took > QueueMetricsTimeout+time.Second {
			t.Fatalf("gather without Redis took %v, want at most about %v", took, QueueMetricsTimeout)
		}
		if _, ok := gauge(families, "asynq_queue_size", DefaultQueue, nil); ok {
			t.Fatal("asynq_queue_size reported while Redis is down")
		}
	}
}

// slowCollector reports one gauge once release is closed.
type slowCollector struct {
	release chan struct{}
	calls   atomic.Int32
}

var slowDesc = prometheus.NewDesc("slow", "A gauge that takes its time.", nil, nil)

func (c *slowCollector) Describe(ch chan<- *prometheus.Desc) { ch <- slowDesc }

func (c *slowCollector) Collect(ch chan<- prometheus.Metric) {
	c.calls.Add(1)
	<-c.release
	ch <- prometheus.MustNewConstMetric(slowDesc, prometheus.GaugeValue, 1)
}

// A collection slower than the bound gives the scrape nothing; scrapes that
// come while it runs wait for it rather than start more, and the one that
// waits when it ends gets its result.
func TestBoundedCollectorGivesUpOnSlowCollection(t *testing.T) {
	slow := &slowCollector{release: make(chan struct{})}
	c := &boundedCollector{inner: slow, timeout: 50 * time.Millisecond}
	collect := func() int {
		ch := make(chan prometheus.Metric, 10)
		c.Collect(ch)
		close(ch)
		n := 0
		for range ch {
			n++
		}
		return n
	}
	for range 3 {
		start := time.Now()
		if n := collect(); n != 0 {
			t.Fatalf("a timed-out scrape got %d metrics", n)
		}
		if took := time.Since(start); took > time.Second {
			t.Fatalf("a timed-out scrape took %v", took)
		}
	}
	c.mu.Lock()
	running := c.running
	c.mu.Unlock()
	if running == nil || slow.calls.Load() != 1 {
		t.Fatalf("after three timed-out scrapes: collection under way %v, started %d, want one", running != nil, slow.calls.Load())
	}
	got := make(chan int, 1)
	go func() {
		c.timeout = 10 * time.Second // read only by the scrape below
		got <- collect()
	}()
	time.Sleep(20 * time.Millisecond)
	close(slow.release)
	if n := <-got; n != 1 {
		t.Fatalf("the scrape waiting when the collection ended got %d metrics, want 1", n)
	}
	if n := collect(); n != 1 { // a fresh collection, not held up
		t.Fatalf("a scrape after that got %d metrics, want 1", n)
	}
}

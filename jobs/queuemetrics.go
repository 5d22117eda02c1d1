package jobs

import (
	"sync"
	"time"

	"github.com/hibiken/asynq"
	asynqmetrics "github.com/hibiken/asynq/x/metrics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
)

// QueueMetricsTimeout bounds how long one scrape waits for the queues'
// state from Redis. asynq's collector has no deadline of its own: with
// Redis unreachable it would wait out go-redis's dial retries, longer than
// a scraper's timeout, and the scrape would fail whole, taking with it the
// series that say Redis is unreachable (refkeeper_pins_scrape_error).
const QueueMetricsTimeout = 2 * time.Second

// RegisterQueueMetrics registers asynq's own queue metrics (asynq_queue_size,
// asynq_queue_latency_seconds, asynq_tasks_enqueued_total{state}, … of its
// x/metrics collector) on reg, read from rdb at each scrape. Every queue in
// the Redis is reported, and every replica reports the same shared state.
// A scrape that gets no answer within QueueMetricsTimeout has no asynq
// series; one collection at most runs at a time, so a Redis outage does not
// pile them up. rdb is not closed by anything here.
func RegisterQueueMetrics(reg prometheus.Registerer, rdb redis.UniversalClient) {
	inner := asynqmetrics.NewQueueMetricsCollector(asynq.NewInspectorFromRedisClient(rdb))
	reg.MustRegister(&boundedCollector{inner: inner, timeout: QueueMetricsTimeout})
}

// boundedCollector answers what inner collects within timeout, or nothing.
// It describes no metrics (an unchecked collector): asynq's collector
// describes by collecting, which would ask Redis at registration.
type boundedCollector struct {
	inner   prometheus.Collector
	timeout time.Duration

	mu      sync.Mutex
	running chan []prometheus.Metric // the collection under way; nil: none
}

func (c *boundedCollector) Describe(chan<- *prometheus.Desc) {}

func (c *boundedCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	done := c.running
	if done == nil {
		done = make(chan []prometheus.Metric, 1)
		c.running = done
		go c.collect(done)
	}
	c.mu.Unlock()
	select {
	case ms := <-done:
		for _, m := range ms {
			ch <- m
		}
	case <-time.After(c.timeout):
		// The collection goes on and ends by itself; a scrape that comes
		// while it runs waits for it instead of starting another.
	}
}

// collect runs inner to the end and hands its metrics to whichever scrape
// waits on done.
func (c *boundedCollector) collect(done chan []prometheus.Metric) {
	metrics := make(chan prometheus.Metric)
	go func() {
		c.inner.Collect(metrics)
		close(metrics)
	}()
	var ms []prometheus.Metric
	for m := range metrics {
		ms = append(ms, m)
	}
	c.mu.Lock()
	c.running = nil
	c.mu.Unlock()
	done <- ms
}

package api

import (
	"strconv"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
)

// httpMetrics are the API's Prometheus metrics, on the registry cmd gives.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	fetches  *prometheus.CounterVec
	bytes    *prometheus.CounterVec
}

func newHTTPMetrics(reg prometheus.Registerer) *httpMetrics {
	m := &httpMetrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refkeeper_http_requests_total", Help: "HTTP requests by route pattern, method and status code.",
		}, []string{"route", "method", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "refkeeper_http_request_duration_seconds", Help: "HTTP request duration by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, []string{"route"}),
		fetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refkeeper_git_fetches_total", Help: "git upload-pack requests by project and outcome (ok, error, refused); project \"invalid\": a name that is not a project.",
		}, []string{"project", "outcome"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refkeeper_git_bytes_served_total", Help: "Bytes sent by git smart HTTP, by project.",
		}, []string{"project"}),
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.duration, m.fetches, m.bytes)
	}
	return m
}

// middleware observes every request under its route pattern (never the raw
// path, so the label set stays bounded).
func (m *httpMetrics) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		start := time.Now()
		err := next(c)
		status := responseStatus(c, err)
		route := c.Path()
		if route == "" {
			route = "unmatched"
		}
		m.requests.WithLabelValues(route, c.Request().Method, strconv.Itoa(status)).Inc()
		m.duration.WithLabelValues(route).Observe(time.Since(start).Seconds())
		return err
	}
}

// responseStatus is the status a request ends with: the handler's, or the
// one its error will be written with.
func responseStatus(c echo.Context, err error) int {
	if err != nil {
		return toHTTPError(err).Status
	}
	return c.Response().Status
}

func (m *httpMetrics) fetch(project, outcome string) {
	m.fetches.WithLabelValues(project, outcome).Inc()
}

func (m *httpMetrics) gitBytes(project string, n int64) {
	if n > 0 {
		m.bytes.WithLabelValues(project).Add(float64(n))
	}
}

package hooks

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts deliveries by host, event and action. A nil *Metrics
// counts nothing.
type Metrics struct {
	deliveries *prometheus.CounterVec
}

// Actions a delivery is counted under besides the answered ones: a
// replayed delivery, a bad signature (401), a malformed body (400) and a
// transient failure (503).
const (
	countReplayed    = "replayed"
	countRejected    = "rejected"
	countMalformed   = "malformed"
	countUnavailable = "unavailable"
)

// NewMetrics registers refkeeper_webhook_deliveries_total on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{deliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "refkeeper_webhook_deliveries_total",
		Help: "Webhook deliveries by host, event (the host's event name; other: any not handled) and action " +
			"(pinned, finished, closed, ignored, failed; replayed, rejected, malformed, unavailable).",
	}, []string{"host", "event", "action"})}
	if reg != nil {
		reg.MustRegister(m.deliveries)
	}
	return m
}

func (m *Metrics) count(h Host, event, action string) {
	if m == nil {
		return
	}
	m.deliveries.WithLabelValues(string(h), event, action).Inc()
}

// eventLabel is the metrics label of an event header before it is parsed:
// one of the names parse gives, so that the label set stays bounded.
func eventLabel(h Host, name string) string {
	switch {
	case h == GitLab && name == "Pipeline Hook":
		return "pipeline"
	case h == GitLab && name == "Merge Request Hook":
		return "merge_request"
	case h == GitHub && (name == "workflow_run" || name == "pull_request" || name == "ping"):
		return name
	case h == Gitea && (name == "pull_request" || name == "workflow_run"):
		return name
	}
	return "other"
}

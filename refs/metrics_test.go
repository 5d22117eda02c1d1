package refs

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/refkeeper/refkeeper/testdata"
)

// roundTrips counts the round trips a Redis client makes: one per command,
// one per pipeline.
type roundTrips struct{ n atomic.Int64 }

func (r *roundTrips) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *roundTrips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmd)
	}
}

func (r *roundTrips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.n.Add(1)
		return next(ctx, cmds)
	}
}

// scrape collects the pin metrics once and answers the round trips it cost
// and the values by name (refkeeper_pins by state).
func scrape(t *testing.T, c *pinCollector, trips *roundTrips) (int64, map[string]float64) {
	t.Helper()
	before := trips.n.Load()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			name := f.GetName()
			for _, l := range m.GetLabel() {
				name += ":" + l.GetValue()
			}
			values[name] = m.GetGauge().GetValue()
		}
	}
	return trips.n.Load() - before, values
}

// A scrape's Redis cost does not grow with the projects: a refresh reads
// all of them in one pipelined round trip, and scrapes in between read
// nothing.
func TestPinMetricsCostDoesNotGrowWithProjects(t *testing.T) {
	r := testdata.StartRedis(t)
	now := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	clock := &fakeClock{now: now}
	var refreshCost []int64
	for _, projects := range []int{1, 300} {
		t.Run(fmt.Sprint(projects, " projects"), func(t *testing.T) {
			r.FlushAll(t)
			client := r.Client(t)
			trips := &roundTrips{}
			client.AddHook(trips)
			s := &Store{Client: client}
			ctx := t.Context()
			for i := range projects {
				p := Project(fmt.Sprintf("group/app%d", i))
				if _, err := s.Pin(ctx, p, 1, benchSHA, 0, now.Add(-time.Duration(i)*time.Minute)); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Pin(ctx, p, 2, benchSHA, 0, now); err != nil {
					t.Fatal(err)
				}
				if _, err := s.Finish(ctx, p, 2, now, Policy{Retention: time.Hour, MaxAge: time.Hour}); err != nil {
					t.Fatal(err)
				}
				if err := s.AddProject(ctx, p); err != nil {
					t.Fatal(err)
				}
			}
			c := newPinCollector(s, clock)
			cost, values := scrape(t, c, trips)
			refreshCost = append(refreshCost, cost)
			t.Logf("refresh over %d projects: %d round trips", projects, cost)
			want := map[string]float64{
				"refkeeper_pins:pinned": float64(projects), "refkeeper_pins:finished": float64(projects),
				"refkeeper_pins:deleted": 0, "refkeeper_pins_scrape_error": 0,
				"refkeeper_oldest_pinned_age_seconds": float64(projects-1) * 60,
			}
			for name, v := range want {
				if values[name] != v {
					t.Fatalf("%s = %v, want %v (all: %v)", name, values[name], v, values)
				}
			}
			if cost, _ := scrape(t, c, trips); cost != 0 {
				t.Fatalf("a scrape within the snapshot's age made %d round trips, want 0", cost)
			}
		})
	}
	if refreshCost[0] != refreshCost[1] {
		t.Fatalf("a refresh cost %d round trips with 1 project and %d with 300; want the same", refreshCost[0], refreshCost[1])
	}
}

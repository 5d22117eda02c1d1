package jobs

import (
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/refs/refstest"
)

// sample reads one metric of a family, the one with the given label value:
// a histogram's count and sum, or a counter's value.
func sample(t *testing.T, reg *prometheus.Registry, family, label, value string) (count uint64, sum, counter float64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != family {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetHistogram().GetSampleCount(), m.GetHistogram().GetSampleSum(), m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0, 0, 0
}

// Many pins finished together in a repository whose refs are packed: the
// worker deletes every ref at expires_at through the tasks alone (the
// periodic sweep runs once a day, and at start-up, when nothing is due), in a
// few shared transactions rather than one per pin.
func TestExpiriesShareTransactions(t *testing.T) {
	const pins = 1000
	fx := refstest.New(t)
	g, rdb := fx.Git, fx.Store.Client
	reg := prometheus.NewRegistry()
	clock := &refs.RedisClock{Client: rdb}
	metrics := refs.NewMetrics(reg, fx.Store, clock)
	fx.Repos.Observer = metrics
	taskClient := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { taskClient.Close() })
	expiry := &ExpiryScheduler{Client: taskClient}
	svc := fx.Service
	svc.Policy = refs.Policy{Retention: time.Second, MaxAge: time.Hour}
	svc.Clock, svc.Scheduler, svc.Metrics = clock, expiry, metrics
	ctx := t.Context()

	var wg sync.WaitGroup
	errs := make(chan error, pins)
	each := func(fn func(id refs.PipelineID) error) {
		for w := range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for id := refs.PipelineID(w + 1); id <= pins; id += 16 {
					if err := fn(id); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		select {
		case err := <-errs:
			t.Fatal(err)
		default:
		}
	}
	each(func(id refs.PipelineID) error {
		_, _, err := svc.Pin(ctx, refs.PinRequest{Project: "group/app", PipelineID: id, SHA: refs.ObjectID(g.First)})
		return err
	})
	// Other pipelines' refs, and everything packed, as the background pack
	// leaves a busy repository: each delete of a packed ref rewrites
	// packed-refs.
	g.PipelineRefs(t, 100_000, 20_000, g.Second)
	g.PackRefs(t)

	w, err := StartWorker(WorkerConfig{
		Redis:        rdb,
		Handlers:     &Handlers{Pins: svc, Scheduler: expiry},
		GCInterval:   24 * time.Hour,
		Registerer:   reg,
		PollInterval: 100 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Shutdown()
	each(func(id refs.PipelineID) error {
		_, err := svc.Finish(ctx, "group/app", id)
		return err
	})

	deadline := time.Now().Add(2 * time.Minute)
	for {
		left := 0
		for ref := range g.Refs(t, "refs/pipelines/") {
			if n, ok := gitops.ParsePipelineRef(gitops.RefName(ref)); ok && n <= pins {
				left++
			}
		}
		if left == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d refs left 2 minutes after they expired", left, pins)
		}
		time.Sleep(50 * time.Millisecond)
	}
	transactions, sum, _ := sample(t, reg, "refkeeper_git_transaction_refs", "kind", "delete")
	deleted := uint64(sum)
	t.Logf("%d refs deleted in %d transactions", deleted, transactions)
	if deleted != pins || transactions == 0 || transactions > pins/50 {
		t.Fatalf("%d refs deleted in %d transactions; want %d in at most %d", deleted, transactions, pins, pins/50)
	}
	_, _, runs := sample(t, reg, "refkeeper_tasks_processed_total", "type", TypeExpireDue)
	_, _, sweeps := sample(t, reg, "refkeeper_tasks_processed_total", "type", TypeSweep)
	t.Logf("%v runs of the due deletions, %v sweeps", runs, sweeps)
	if runs < 1 || sweeps > 1 {
		t.Fatalf("%v runs of the due deletions and %v sweeps; want the runs to have done it", runs, sweeps)
	}
	counts, err := fx.Store.Count(ctx, "group/app")
	if err != nil || counts[refs.StateDeleted] != pins || counts[refs.StateFinished] != 0 {
		t.Fatalf("records = %v, %v; want %d deleted", counts, err, pins)
	}
	others := 0
	for ref := range g.Refs(t, "refs/pipelines/") {
		if n, ok := gitops.ParsePipelineRef(gitops.RefName(ref)); ok && n >= 100_000 {
			others++
		}
	}
	if others != 20_000 {
		t.Fatalf("%d of the other 20000 pipelines' refs left", others)
	}
}

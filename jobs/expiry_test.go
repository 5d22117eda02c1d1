package jobs

import (
	"sync"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// deleteTransactions reads how many delete transactions git ran, and how
// many refs they held, from the domain's metrics.
func deleteTransactions(t *testing.T, reg *prometheus.Registry) (transactions, refCount uint64) {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() != "refkeeper_git_transaction_refs" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "kind" && l.GetValue() == "delete" {
					return m.GetHistogram().GetSampleCount(), uint64(m.GetHistogram().GetSampleSum())
				}
			}
		}
	}
	return 0, 0
}

// Many pins finished together in a repository whose refs are packed: the
// worker deletes every ref at expires_at through the tasks alone (the
// periodic sweep is an hour away), in a few shared transactions rather than
// one per pin.
func TestExpiriesShareTransactions(t *testing.T) {
	const pins = 1000
	dir := t.TempDir()
	g := testdata.NewMergeRequestProject(t, dir)
	r := testdata.StartRedis(t)
	rdb := r.Client(t)
	reg := prometheus.NewRegistry()
	store := &refs.Store{Client: rdb}
	clock := &refs.RedisClock{Client: rdb}
	metrics := refs.NewMetrics(reg, store, clock)
	root := &gitops.Root{Dir: dir, Observer: metrics}
	t.Cleanup(root.Close)
	taskClient := asynq.NewClientFromRedisClient(rdb)
	t.Cleanup(func() { taskClient.Close() })
	expiry := &ExpiryScheduler{Client: taskClient}
	svc := &refs.Service{
		Repos:     root,
		Store:     store,
		Policy:    refs.Policy{Retention: time.Second, MaxAge: time.Hour},
		Clock:     clock,
		Scheduler: expiry,
		Metrics:   metrics,
	}
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
		GCInterval:   time.Hour,
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
	transactions, deleted := deleteTransactions(t, reg)
	t.Logf("%d refs deleted in %d transactions", deleted, transactions)
	if deleted != pins || transactions == 0 || transactions > pins/50 {
		t.Fatalf("%d refs deleted in %d transactions; want %d in at most %d", deleted, transactions, pins, pins/50)
	}
	counts, err := store.Count(ctx, "group/app")
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

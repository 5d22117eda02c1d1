package gitops

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// txLog is a TransactionObserver that keeps what it hears.
type txLog struct {
	mu  sync.Mutex
	txs []loggedTx
}

type loggedTx struct {
	kind string
	refs int
	err  error
}

func (l *txLog) Transaction(kind string, refs int, _ time.Duration, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.txs = append(l.txs, loggedTx{kind, refs, err})
}

// creates answers the create transactions heard so far.
func (l *txLog) creates() []loggedTx {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []loggedTx
	for _, tx := range l.txs {
		if tx.kind == "create" {
			out = append(out, tx)
		}
	}
	return out
}

// observe installs a txLog on the fixture's Root.
func observe(f *fixture) *txLog {
	l := &txLog{}
	f.root.Observer = l
	return l
}

// holdGroupCommit keeps the repository's group commit from starting while
// the test queues creates: the creates are then concurrent by construction,
// not by the luck of the scheduler. queued waits until n creates wait in
// the queue; release lets the group commit run.
func holdGroupCommit(tb testing.TB, repo *Repo) (queued func(n int), release func()) {
	tb.Helper()
	repo.createMu.Lock()
	if repo.draining {
		tb.Fatal("the group commit is already running")
	}
	repo.draining = true // as if a drainer ran: creates queue and start none
	repo.createMu.Unlock()
	queued = func(n int) {
		tb.Helper()
		deadline := time.Now().Add(time.Minute) // a hang guard, not a synchronisation
		for {
			repo.createMu.Lock()
			have := len(repo.createQ)
			repo.createMu.Unlock()
			if have >= n {
				return
			}
			if time.Now().After(deadline) {
				tb.Fatalf("%d creates queued, want %d", have, n)
			}
			runtime.Gosched()
		}
	}
	return queued, func() { go repo.drainCreates() }
}

// TestGroupCommit: concurrent creates through one Repo share transactions;
// every ref is created exactly once, duplicates in a batch get the answer
// they would have got one after the other, and a ref that already exists
// elsewhere is answered alone without failing a transaction.
func TestGroupCommit(t *testing.T) {
	f := newFixture(t)
	log := observe(f)
	f.git.Git(t, "update-ref", "refs/pipelines/5", string(f.c2)) // exists at the other SHA
	const refs, perRef = 10, 6
	type answer struct {
		sha     ObjectID
		created bool
		err     error
	}
	queued, release := holdGroupCommit(t, f.repo)
	answers := make([][]answer, refs)
	var wg sync.WaitGroup
	for id := range refs {
		answers[id] = make([]answer, perRef)
		for k := range perRef {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sha := f.c1
				if k%2 == 1 {
					sha = f.c2
				}
				created, err := f.repo.Create(t.Context(), PipelineRef(int64(id+1)), sha)
				answers[id][k] = answer{sha, created, err}
			}()
		}
	}
	creates := (refs - 1) * perRef // those of refs/pipelines/5 answer from the ref
	queued(creates)
	release()
	wg.Wait()
	onDisk := f.git.Refs(t, "refs/pipelines/")
	for id := range refs {
		final := ObjectID(onDisk[fmt.Sprintf("refs/pipelines/%d", id+1)])
		creations := 0
		for k, a := range answers[id] {
			var mismatch *MismatchingStateError
			switch {
			case a.created:
				creations++
				if a.sha != final {
					t.Errorf("ref %d: call %d created %s, ref is at %s", id, k, a.sha, final)
				}
			case a.err == nil:
				if a.sha != final {
					t.Errorf("ref %d: call %d told success for %s, ref is at %s", id, k, a.sha, final)
				}
			case errors.As(a.err, &mismatch):
				if a.sha == final || mismatch.Actual != final {
					t.Errorf("ref %d: call %d mismatch %v, ref is at %s", id, k, a.err, final)
				}
			default:
				t.Errorf("ref %d: call %d: %v", id, k, a.err)
			}
		}
		want := 1
		if id+1 == 5 {
			want = 0 // existed before
		}
		if creations != want {
			t.Errorf("ref %d: %d creations, want %d", id, creations, want)
		}
	}
	if ObjectID(onDisk["refs/pipelines/5"]) != f.c2 {
		t.Fatalf("the pre-existing ref moved")
	}
	txs := log.creates()
	written := 0
	for _, tx := range txs {
		if tx.err != nil {
			t.Errorf("a create transaction failed: %v", tx.err)
		}
		written += tx.refs
	}
	if len(txs) == 0 || len(txs) >= creates {
		t.Errorf("%d creates went into %d transactions; want them shared", creates, len(txs))
	}
	if written != refs-1 {
		t.Errorf("transactions wrote %d refs, want %d (each ref once)", written, refs-1)
	}
}

// TestRepeatedCreatesLeaveBatchesAlone: creates of refs that exist (a
// repeated pin at the same SHA, or a conflicting one) answer from the ref,
// so the new refs created with them never see a failed transaction.
func TestRepeatedCreatesLeaveBatchesAlone(t *testing.T) {
	f := newFixture(t)
	log := observe(f)
	const existing, fresh = 40, 100
	f.git.PipelineRefs(t, 1, existing, string(f.c1))
	f.git.PackRefs(t)
	f.git.Git(t, "update-ref", "refs/pipelines/1", string(f.c1)) // one loose as well

	queued, release := holdGroupCommit(t, f.repo)
	errs := make([]error, existing+fresh)
	created := make([]bool, existing+fresh)
	var wg sync.WaitGroup
	for i := range fresh {
		wg.Add(1)
		go func() {
			defer wg.Done()
			created[existing+i], errs[existing+i] = f.repo.Create(t.Context(), PipelineRef(int64(1000+i)), f.c1)
		}()
	}
	queued(fresh)
	for i := range existing {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sha := f.c1
			if i%2 == 1 {
				sha = f.c2
			}
			created[i], errs[i] = f.repo.Create(t.Context(), PipelineRef(int64(i+1)), sha)
		}()
	}
	release()
	wg.Wait()
	for i := range existing {
		var mismatch *MismatchingStateError
		switch {
		case created[i]:
			t.Errorf("re-create of refs/pipelines/%d answered created", i+1)
		case i%2 == 0 && errs[i] != nil:
			t.Errorf("re-create of refs/pipelines/%d at the same SHA = %v, want success", i+1, errs[i])
		case i%2 == 1 && (!errors.As(errs[i], &mismatch) || mismatch.Actual != f.c1):
			t.Errorf("re-create of refs/pipelines/%d at another SHA = %v, want a mismatch at %s", i+1, errs[i], f.c1)
		}
	}
	for i := existing; i < existing+fresh; i++ {
		if !created[i] || errs[i] != nil {
			t.Errorf("create %d = %v, %v; want created", i, created[i], errs[i])
		}
	}
	written := 0
	for _, tx := range log.creates() {
		if tx.err != nil {
			t.Errorf("a create transaction failed: %v", tx.err)
		}
		written += tx.refs
	}
	if written != fresh {
		t.Errorf("transactions wrote %d refs, want %d", written, fresh)
	}
	if n := len(f.git.Refs(t, "refs/pipelines/")); n != existing+fresh {
		t.Errorf("%d pipeline refs, want %d", n, existing+fresh)
	}
}

// TestCreateBatchIsCapped: a queue longer than maxCreateBatch is written in
// transactions of at most maxCreateBatch refs.
func TestCreateBatchIsCapped(t *testing.T) {
	f := newFixture(t)
	log := observe(f)
	const n = maxCreateBatch + 100
	queued, release := holdGroupCommit(t, f.repo)
	var failures atomic.Int32
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if created, err := f.repo.Create(t.Context(), PipelineRef(int64(i+1)), f.c1); err != nil || !created {
				failures.Add(1)
			}
		}()
	}
	queued(n)
	release()
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d creates failed", failures.Load())
	}
	var sizes []int
	for _, tx := range log.creates() {
		sizes = append(sizes, tx.refs)
	}
	if len(sizes) != 2 || sizes[0] != maxCreateBatch || sizes[1] != n-maxCreateBatch {
		t.Fatalf("transaction sizes %v, want [%d %d]", sizes, maxCreateBatch, n-maxCreateBatch)
	}
}

// TestLooseRefsGetPacked: past the threshold, created refs are packed in the
// background, with every value unchanged.
func TestLooseRefsGetPacked(t *testing.T) {
	f := newFixture(t)
	before := f.git.Refs(t, "refs/heads/")
	for id := int64(1); id <= packThreshold+20; id++ {
		if _, err := f.repo.Create(t.Context(), PipelineRef(id), f.c1); err != nil {
			t.Fatal(err)
		}
	}
	f.repo.packs.Wait()
	packed, err := os.ReadFile(filepath.Join(f.repo.Dir(), "packed-refs"))
	if err != nil {
		t.Fatalf("no packed-refs after %d creates: %v", packThreshold+20, err)
	}
	if !strings.Contains(string(packed), string(f.c1)+" refs/pipelines/1\n") {
		t.Fatalf("refs/pipelines/1 not packed:\n%.300s", packed)
	}
	refs := f.git.Refs(t, "refs/pipelines/")
	if len(refs) != packThreshold+20 {
		t.Fatalf("%d refs after packing, want %d", len(refs), packThreshold+20)
	}
	for name, sha := range f.git.Refs(t, "refs/heads/") {
		if before[name] != sha {
			t.Fatalf("packing moved %s", name)
		}
	}
}

package gitops

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"
)

// packThreshold is how many loose refs the creates of one process may add
// before the repository's refs are packed. Loose refs are costly twice:
// git reads the whole refs/pipelines/ directory on every create (to check
// for name conflicts), so creates slow down as loose refs pile up; and a
// fetch has to read every loose ref (0.5 to 0.75 s with 100k loose refs,
// 20 to 40 ms packed). Gitaly packs at roughly 16 to 100 loose refs.
const packThreshold = 100

// notePacking counts refs created loose and starts a pack in the background
// when there are enough; one pack per repository runs at a time.
func (r *Repo) notePacking(created int) {
	if created == 0 || r.loose.Add(int64(created)) < packThreshold {
		return
	}
	if !r.packing.CompareAndSwap(false, true) {
		return
	}
	r.loose.Store(0)
	r.packs.Add(1)
	go func() {
		defer r.packs.Done()
		defer r.packing.Store(false)
		r.packRefs()
	}()
}

// packRefs runs `git pack-refs --all --prune`: every ref's value stays what
// it is, only its storage moves into packed-refs. git takes the locks, so
// creates and deletes running meanwhile stay correct.
func (r *Repo) packRefs() {
	ctx, cancel := context.WithTimeout(context.Background(), gitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, r.root.git(), "--git-dir", r.dir, "pack-refs", "--all", "--prune")
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		r.root.logger().Warn("packing refs failed; will try again", "project", r.name, "err", err, "output", string(out))
		return
	}
	r.root.logger().Debug("packed refs", "project", r.name, "duration_ms", time.Since(start).Milliseconds())
}

// packState is the pack bookkeeping of a repository.
type packState struct {
	loose   atomic.Int64   // refs created loose since the last pack began
	packing atomic.Bool    // a pack is running
	packs   sync.WaitGroup // running packs, waited for on Close
}

package gitops

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/refkeeper/refkeeper/gitexec"
)

// Loose refs cost every fetch: upload-pack reads each loose ref under
// refs/pipelines/ (about 12 µs apiece here: 10k loose refs add 120 ms to a
// fetch; 100k loose refs take 0.5 to 0.75 s and 400 MB of disk, against 20
// to 40 ms packed). Packing costs what packed-refs holds: `git pack-refs`
// rewrites the whole file (about 55 ms of CPU at 100k refs). Packing every
// packThreshold creates would spend most of a busy server's CPU on rewrites
// of a large file, so the threshold grows with the file: a pack comes after
// creates worth packFraction of the packed refs, and at least packThreshold.
// That keeps the rewrite cost per create constant (about 0.1 ms) and the
// loose refs a fetch reads below one in packFraction of all refs.
const (
	packThreshold = 100
	packFraction  = 200
	// packedRefBytes is the length of one packed-refs line for a pipeline
	// ref: 40 hex digits, a space, refs/pipelines/ and an id, a newline.
	packedRefBytes = 64
)

// packThresholdFor is how many creates may go loose before a pack, for a
// packed-refs file of the given size.
func packThresholdFor(packedBytes int64) int64 {
	return max(packThreshold, packedBytes/packedRefBytes/packFraction)
}

// notePacking counts refs created loose and starts a pack in the background
// when there are enough; one pack per repository runs at a time, and none
// once Close has begun. It reports whether it started one.
func (r *Repo) notePacking(created int) bool {
	if created == 0 {
		return false
	}
	loose := r.loose.Add(int64(created))
	if loose < packThreshold {
		return false
	}
	var packedBytes int64
	if fi, err := os.Stat(filepath.Join(r.dir, "packed-refs")); err == nil {
		packedBytes = fi.Size()
	}
	if loose < packThresholdFor(packedBytes) {
		return false
	}
	// Add under the mutex that Close takes to set closed: an Add racing
	// Close's Wait is a misuse of the WaitGroup, and a pack started after
	// Close would outlive the Root.
	r.packMu.Lock()
	if r.packClosed || r.packing || time.Now().Before(r.packRetryAt) {
		r.packMu.Unlock()
		return false
	}
	r.packing = true
	r.packs.Add(1)
	r.packMu.Unlock()
	counted := r.loose.Swap(0)
	go func() {
		defer r.packs.Done()
		// The Root's GitTimeout bounds it; Close waits for it.
		err := r.packRefs(context.Background())
		if err != nil {
			// A crashed git's packed-refs.lock would fail every pack (and
			// every delete of a packed ref) until removed.
			r.clearStaleLocks(nil, true)
		}
		r.packMu.Lock()
		defer r.packMu.Unlock()
		r.packing = false
		if err == nil {
			r.packFailures, r.packRetryAt = 0, time.Time{}
			return
		}
		// The refs are still loose: count them again, so the next create
		// after the pause packs, rather than another threshold of creates.
		r.loose.Add(counted)
		r.packFailures++
		r.packRetryAt = time.Now().Add(packRetryDelay(r.packFailures))
	}()
	return true
}

// packRetryDelay is how long packing pauses after failures in a row: long
// enough that a lock held by another replica's pack, or a full disk, is not
// hammered by a git process per create; short enough that loose refs do not
// pile up for long once the cause is gone.
func packRetryDelay(failures int) time.Duration {
	const first, most = 5 * time.Second, 5 * time.Minute
	if failures > 6 {
		return most
	}
	return min(first<<(failures-1), most)
}

// stopPacking keeps new packs from starting and waits for the running one.
func (r *Repo) stopPacking() {
	r.packMu.Lock()
	r.packClosed = true
	r.packMu.Unlock()
	r.packs.Wait()
}

// packRefs runs `git pack-refs --all --prune`: every ref's value stays what
// it is, only its storage moves into packed-refs. git takes the locks, so
// creates and deletes running meanwhile stay correct. When ctx ends (or the
// git timeout passes), git gets SIGTERM first: on SIGTERM git removes its
// packed-refs.lock and ref locks, where a killed git would leave them to
// block every delete until they turn stale.
func (r *Repo) packRefs(ctx context.Context) error {
	cmd := r.root.command(ctx, r.dir, "pack-refs", "--all", "--prune")
	start := time.Now()
	var out gitexec.Stderr
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		r.root.logger().Warn("packing refs failed; will try again", "project", r.name, "err", err, "output", out.String())
		return err
	}
	r.root.logger().Debug("packed refs", "project", r.name, "duration_ms", time.Since(start).Milliseconds())
	return nil
}

// packState is the pack bookkeeping of a repository.
type packState struct {
	loose atomic.Int64 // refs created loose since the last pack began

	packMu       sync.Mutex
	packing      bool           // a pack is running
	packClosed   bool           // Close has begun: no new packs
	packs        sync.WaitGroup // running packs; Add only under packMu, when !packClosed
	packFailures int            // packs failed in a row
	packRetryAt  time.Time      // no pack starts before this, after a failure
}

package gitops

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/refkeeper/refkeeper/gitexec"
)

// DefaultHousekeepingTimeout bounds one housekeeping run of a mirror when
// nothing else says. A full repack of a large repository takes minutes,
// far past GitTimeout, which bounds the quick commands.
const DefaultHousekeepingTimeout = 30 * time.Minute

// HousekeepingOptions tune `git gc --auto` for one run. Zero values leave
// git's own defaults (gc.auto 6700 loose objects, gc.autoPackLimit 50
// packs).
type HousekeepingOptions struct {
	// Timeout bounds the git process (SIGTERM, then SIGKILL after the
	// grace). Zero: DefaultHousekeepingTimeout.
	Timeout time.Duration
	// LooseObjects is gc.auto: about how many loose objects make gc
	// repack (git estimates them from one of the 256 object directories).
	LooseObjects int
	// Packs is gc.autoPackLimit: more packs than this make gc repack.
	Packs int
}

// housekeepingConfig are the settings of every housekeeping run, given on
// the command line so that nothing in the mirror's own config can weaken
// them:
//   - gc.pruneExpire stays at git's default of two weeks: a pin by SHA
//     fetches objects that no ref reaches until the pin's ref is written a
//     moment later; only objects unreachable for two weeks are pruned.
//     Everything a pin needs is reachable from refs/pipelines/ anyway.
//   - gc.autoDetach=false: gc runs in the foreground, so its lease and its
//     bound cover the whole run, not a child left behind.
//   - gc.packRefs=false: pipeline refs are packed by the Root's own packer
//     (pack.go) under its rules; two packers would contend for
//     packed-refs.lock with every deletion.
//   - no reflogs or rerere are kept in a mirror; the worktree and cruft
//     settings stay git's.
var housekeepingConfig = []string{
	"-c", "gc.pruneExpire=2.weeks.ago",
	"-c", "gc.autoDetach=false",
	"-c", "gc.packRefs=false",
	"-c", "maintenance.auto=false",
}

// HousekeepMirror runs `git gc --auto` in the mirror name in place: when
// enough loose objects or packs accumulated from fetches, git repacks what
// is reachable into one pack and prunes only what has been unreachable for
// two weeks (see housekeepingConfig). A local project is *NotMirrorError
// and is not touched: something else keeps it. A staged mirror, or none, is
// *ProjectNotFoundError. git's own gc.pid lock keeps two runs on one
// machine apart; callers across machines hold a lease (refs does).
func (r *Root) HousekeepMirror(ctx context.Context, name ProjectName, opts HousekeepingOptions) error {
	pi, err := r.Project(name)
	if err != nil {
		return err
	}
	if !pi.Mirror {
		return &NotMirrorError{Project: name}
	}
	if pi.Staged {
		return &ProjectNotFoundError{Project: name}
	}
	bound := opts.Timeout
	if bound <= 0 {
		bound = DefaultHousekeepingTimeout
	}
	args := append([]string{}, housekeepingConfig...)
	if opts.LooseObjects > 0 {
		args = append(args, "-c", "gc.auto="+strconv.Itoa(opts.LooseObjects))
	}
	if opts.Packs > 0 {
		args = append(args, "-c", "gc.autoPackLimit="+strconv.Itoa(opts.Packs))
	}
	args = append(args, "gc", "--auto", "--quiet")
	var out gitexec.Stderr
	cmd := r.commandWithin(ctx, bound, pi.Dir, args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return &CommandError{Args: []string{"gc", "--auto"}, Stderr: out.String(), Err: err}
	}
	return nil
}

// MirrorStat is what the metrics show of one mirror in place.
type MirrorStat struct {
	Name ProjectName
	// SizeBytes is the size of the files in its object directory (loose
	// objects, packs and their indexes).
	SizeBytes int64
	// FetchedAt is when the last fetch into it succeeded (zero: never).
	FetchedAt time.Time
}

// MirrorStats lists the mirrors in place (local projects and staged
// mirrors are left out) with their size and last fetch. It reads every
// file name in each object directory: callers cache the answer.
func (r *Root) MirrorStats(ctx context.Context) ([]MirrorStat, error) {
	names, err := r.Projects(ctx)
	if err != nil {
		return nil, err
	}
	var stats []MirrorStat
	for _, name := range names {
		pi, err := r.Project(name)
		if err != nil || !pi.Mirror || pi.Staged {
			continue // gone meanwhile, unreadable, or not a mirror
		}
		size, err := dirSize(filepath.Join(pi.Dir, "objects"))
		if err != nil {
			r.logger().Warn("measuring a mirror", "project", string(name), "err", err)
			continue
		}
		stats = append(stats, MirrorStat{Name: name, SizeBytes: size, FetchedAt: pi.FetchedAt})
	}
	return stats, nil
}

// dirSize sums the sizes of the regular files below dir. Files that vanish
// during the walk (a repack removing packs) are not counted.
func dirSize(dir string) (int64, error) {
	var total int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if absent(err) && path != dir {
				return nil
			}
			return err
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			if absent(err) {
				return nil
			}
			return err
		}
		total += info.Size()
		return nil
	})
	if err != nil && !os.IsNotExist(err) {
		return total, err
	}
	return total, nil
}

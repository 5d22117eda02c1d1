package gitops

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/refkeeper/refkeeper/gitexec"
)

// Update is one ref change in a transaction: set Ref to New if it is at Old
// now. ZeroID as Old means "must not exist", ZeroID as New means "delete".
type Update struct {
	Ref RefName
	New ObjectID
	Old ObjectID
}

// updaterState is where an Updater is in its call order.
type updaterState int

const (
	updaterIdle     updaterState = iota // between transactions
	updaterStarted                      // Start called; updates are being queued
	updaterPrepared                     // every ref locked, every old value compared
	updaterClosed                       // the process is gone
)

func (s updaterState) String() string {
	return [...]string{"idle", "started", "prepared", "closed"}[s]
}

// Updater runs ref transactions in one `git update-ref --stdin` process:
// every ref write of gitops is one of its transactions. Each transaction is
// all or nothing, and every update's old value is compared while git holds
// the ref's lock, so a create (old value ZeroID) is create-if-absent and a
// delete is compare-and-delete, across goroutines, processes and replicas.
//
// The legal call order is
//
//	u, err := repo.NewUpdater(ctx)
//	// any number of transactions, one after another:
//	u.Start()
//	u.Create(ref, id) / u.Delete(ref, old) / u.Update(ref, new, old) // each ref at most once
//	u.Prepare() // optional
//	u.Commit()  // or u.Abort()
//	// and at the end
//	u.Close()
//
// Prepare takes the lock of every ref in the transaction and compares the
// old values; until Commit or Abort no other writer can change those refs.
// What a caller checks between Prepare and Commit (a record elsewhere) thus
// holds for the refs at the moment they change: that is the fence callers
// build on (see Check). Keep that window short: every writer of those refs,
// and of packed-refs for a delete, waits for it.
//
// Commit without Prepare prepares and commits in one step. Abort after
// Prepare releases the locks and changes nothing; after Start alone it
// only drops what was queued. After Commit or Abort the Updater takes the
// next Start. A call out of this order answers *UpdaterStateError and
// changes nothing.
//
// When git refuses a transaction it exits: the failing call answers a typed
// error where git's message allows (*MismatchingStateError, *LockedError,
// *ObjectNotFoundError, *TimeoutError), else *CommandError, and the Updater
// is closed; make a new one for the next transaction. When ctx ends, or
// the Root's GitTimeout after the process started, git is ended (SIGTERM,
// then SIGKILL), whatever it was doing: callers that must not cut a
// transaction short pass a context that does not end.
//
// An Updater is not safe for concurrent use.
type Updater struct {
	repo   *Repo
	ctx    context.Context
	cmd    *gitexec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr *gitexec.Stderr
	born   time.Time // the process started
	used   time.Time // the last transaction began

	state   updaterState
	queued  bytes.Buffer // commands of the started transaction, not yet sent
	updates []Update
	refs    map[RefName]bool
	began   time.Time
	err     error // why the process is gone
}

// NewUpdater starts a `git update-ref --stdin` process on the repository. A
// live lock is waited for the Root's LockTimeout.
func (r *Repo) NewUpdater(ctx context.Context) (*Updater, error) {
	return r.newUpdater(ctx, r.root.lockTimeout())
}

// newUpdater starts an Updater whose git waits refLockTimeout for a ref's
// lock (packed-refs' is always waited for the Root's lock timeout). A full
// SHA is taken for what it is: by default git first looks for a ref of that
// name in six places, to warn that it would be ambiguous, which is two
// thirds of the system calls of a create.
func (r *Repo) newUpdater(ctx context.Context, refLockTimeout time.Duration) (*Updater, error) {
	cmd := r.root.command(ctx, r.dir,
		"-c", "core.filesRefLockTimeout="+strconv.FormatInt(refLockTimeout.Milliseconds(), 10),
		"-c", "core.packedRefsTimeout="+strconv.FormatInt(r.root.lockTimeout().Milliseconds(), 10),
		"-c", "core.warnAmbiguousRefs=false",
		"update-ref", "--stdin")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, &CommandError{Args: updateRefArgs, Err: err}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, &CommandError{Args: updateRefArgs, Err: err}
	}
	stderr := &gitexec.Stderr{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, &CommandError{Args: updateRefArgs, Err: err}
	}
	now := time.Now()
	return &Updater{repo: r, ctx: ctx, cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), stderr: stderr,
		born: now, used: now, refs: make(map[RefName]bool)}, nil
}

// updateRefArgs names the command in errors.
var updateRefArgs = []string{"update-ref", "--stdin"}

// Start begins a transaction.
func (u *Updater) Start() error {
	if err := u.expect("Start", updaterIdle); err != nil {
		return err
	}
	u.queued.Reset()
	u.queued.WriteString("start\n")
	u.updates = u.updates[:0]
	clear(u.refs)
	u.began = time.Now()
	u.used = u.began
	u.state = updaterStarted
	return nil
}

// Update queues setting ref to newID if it is at oldID under the lock. Only
// refs under refs/pipelines/ are written, each at most once per transaction.
func (u *Updater) Update(ref RefName, newID, oldID ObjectID) error {
	if err := u.expect("Update", updaterStarted); err != nil {
		return err
	}
	if err := checkWritable(ref); err != nil {
		return err
	}
	switch {
	case newID == ZeroID && oldID == ZeroID:
		return &InvalidUpdateError{Ref: ref, Reason: "neither a new nor an old value"}
	case u.refs[ref]:
		return &InvalidUpdateError{Ref: ref, Reason: "already in this transaction"}
	}
	u.refs[ref] = true
	u.updates = append(u.updates, Update{Ref: ref, New: newID, Old: oldID})
	fmt.Fprintf(&u.queued, "update %s %s %s\n", ref, newID, oldID)
	return nil
}

// Create queues creating ref at id if it does not exist.
func (u *Updater) Create(ref RefName, id ObjectID) error { return u.Update(ref, id, ZeroID) }

// Delete queues deleting ref if it is at old.
func (u *Updater) Delete(ref RefName, old ObjectID) error { return u.Update(ref, ZeroID, old) }

// Prepare locks every ref of the transaction and compares their old values.
// On failure the transaction is over and the Updater closed.
func (u *Updater) Prepare() error {
	if err := u.expect("Prepare", updaterStarted); err != nil {
		return err
	}
	u.queued.WriteString("prepare\n")
	if err := u.send("start: ok", "prepare: ok"); err != nil {
		return u.failed(err)
	}
	u.state = updaterPrepared
	return nil
}

// Commit applies the transaction, preparing it first if Prepare was not
// called, and releases its locks.
func (u *Updater) Commit() error {
	if err := u.expect("Commit", updaterStarted, updaterPrepared); err != nil {
		return err
	}
	want := []string{"commit: ok"}
	if u.state == updaterStarted {
		want = []string{"start: ok", "commit: ok"}
	}
	u.queued.WriteString("commit\n")
	if err := u.send(want...); err != nil {
		return u.failed(err)
	}
	u.repo.root.observe(u.updates, u.began, nil)
	u.state = updaterIdle
	return nil
}

// Abort ends the transaction with every ref unchanged and its locks
// released.
func (u *Updater) Abort() error {
	if err := u.expect("Abort", updaterStarted, updaterPrepared); err != nil {
		return err
	}
	if u.state == updaterStarted {
		// git has seen nothing of it yet.
		u.state = updaterIdle
		return nil
	}
	u.queued.WriteString("abort\n")
	if err := u.send("abort: ok"); err != nil {
		u.updates = nil // nothing was to be written: not a failed write
		return u.failed(err)
	}
	u.state = updaterIdle
	return nil
}

// Close ends the process; a transaction still open is aborted by git. It
// waits for git to exit, which the Root's GitTimeout bounds.
func (u *Updater) Close() error {
	if u.state == updaterClosed {
		return nil
	}
	u.state = updaterClosed
	_ = u.stdin.Close()
	err := u.cmd.Wait()
	if err != nil {
		return &CommandError{Args: updateRefArgs, Stderr: strings.TrimSpace(u.stderr.String()), Err: err}
	}
	return nil
}

// expect answers *UpdaterStateError unless the Updater is in one of states.
func (u *Updater) expect(call string, states ...updaterState) error {
	for _, s := range states {
		if u.state == s {
			return nil
		}
	}
	if u.state == updaterClosed && u.err != nil {
		return &UpdaterStateError{Call: call, State: u.state.String(), Err: u.err}
	}
	return &UpdaterStateError{Call: call, State: u.state.String()}
}

// send writes the queued commands in one write and reads git's answers,
// which must be want, in order.
func (u *Updater) send(want ...string) error {
	// When git refuses, it exits: the write may then fail too, but the
	// answer is read from git's output either way.
	_, _ = u.stdin.Write(u.queued.Bytes())
	u.queued.Reset()
	for _, answer := range want {
		line, err := u.out.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != answer {
			return fmt.Errorf("transaction failed at %q", answer)
		}
	}
	return nil
}

// failed ends the process after git refused or died, and answers the typed
// error git's message gives.
func (u *Updater) failed(cause error) error {
	u.state = updaterClosed
	_ = u.stdin.Close()
	waitErr := u.cmd.Wait() // also waits until stderr is copied
	stderr := strings.TrimSpace(u.stderr.String())
	var err error
	switch {
	case u.ctx.Err() != nil:
		err = fmt.Errorf("git update-ref ended: %w", u.ctx.Err())
	case gitexec.Signaled(waitErr) &&
		time.Since(u.born) >= u.repo.root.gitTimeout():
		err = &TimeoutError{Args: updateRefArgs, Limit: u.repo.root.gitTimeout()}
	default:
		err = u.decode(stderr)
		if err == nil {
			if waitErr != nil {
				cause = waitErr
			}
			err = &CommandError{Args: updateRefArgs, Stderr: stderr, Err: cause}
		}
	}
	u.err = err
	u.repo.root.observe(u.updates, u.began, err)
	return err
}

// git's messages for a refused transaction (git 2.x, LC_ALL=C).
var (
	reMismatch = regexp.MustCompile(`cannot lock ref '([^']+)': is at ([0-9a-f]{40}) but expected ([0-9a-f]{40})`)
	reExists   = regexp.MustCompile(`cannot lock ref '([^']+)': reference already exists`)
	reMissing  = regexp.MustCompile(`cannot lock ref '([^']+)': unable to resolve reference`)
	reRefLock  = regexp.MustCompile(`cannot lock ref '([^']+)': Unable to create '([^']+)': File exists`)
	reLock     = regexp.MustCompile(`Unable to create '([^']+)': File exists`)
	reNoObject = regexp.MustCompile(`with nonexistent object ([0-9a-f]{40})`)
)

// decode turns git's message into a typed error, or nil when it says
// nothing gitops knows. This is the one place that reads git's words.
func (u *Updater) decode(stderr string) error {
	if m := reMismatch.FindStringSubmatch(stderr); m != nil {
		return &MismatchingStateError{Ref: RefName(m[1]), Actual: ObjectID(m[2]), Expected: ObjectID(m[3])}
	}
	if m := reExists.FindStringSubmatch(stderr); m != nil {
		ref := RefName(m[1])
		actual, _ := u.repo.ResolveRef(ref) // "" if it went meanwhile
		return &MismatchingStateError{Ref: ref, Expected: ZeroID, Actual: actual}
	}
	if m := reMissing.FindStringSubmatch(stderr); m != nil {
		ref := RefName(m[1])
		return &MismatchingStateError{Ref: ref, Expected: u.oldValue(ref)}
	}
	if m := reRefLock.FindStringSubmatch(stderr); m != nil {
		return &LockedError{Ref: RefName(m[1]), Path: filepath.Clean(m[2])}
	}
	if m := reLock.FindStringSubmatch(stderr); m != nil {
		return &LockedError{Path: filepath.Clean(m[1])}
	}
	if m := reNoObject.FindStringSubmatch(stderr); m != nil {
		return &ObjectNotFoundError{ID: ObjectID(m[1])}
	}
	return nil
}

// oldValue is the old value the transaction gave ref.
func (u *Updater) oldValue(ref RefName) ObjectID {
	for _, up := range u.updates {
		if up.Ref == ref {
			return up.Old
		}
	}
	return ""
}

func checkWritable(ref RefName) error {
	if _, ok := ParsePipelineRef(ref); !ok {
		return &ForbiddenRefError{Ref: ref}
	}
	return nil
}

// minFreeBytes is the free space under which a failed write is put down to
// a full disk: a ref lock file needs one block.
const minFreeBytes = 64 << 10

// explain attributes a git failure no ref state explains: a full disk (git
// only says it "couldn't write" the lock file) or, failing that, git itself.
func (r *Repo) explain(err error) error {
	var fs syscall.Statfs_t
	if syscall.Statfs(r.dir, &fs) == nil && fs.Bavail*uint64(fs.Bsize) < minFreeBytes {
		return &DiskFullError{Dir: r.dir, Err: err}
	}
	return err
}

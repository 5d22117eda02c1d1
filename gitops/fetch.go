package gitops

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/refkeeper/refkeeper/gitexec"
	"github.com/refkeeper/refkeeper/limits"
)

// Credential is what an upstream asks for over HTTP basic auth: a user name
// and a password or access token.
type Credential struct {
	Username string
	Password string
}

// String never shows the password: a Credential that reaches a log line or
// an error by mistake says only whose it is.
func (c Credential) String() string { return "credential for " + c.Username }

// GoString is String, for %#v.
func (c Credential) GoString() string { return c.String() }

// Upstream is where a mirror fetches from.
type Upstream struct {
	// URL is the repository's http, https or file URL, never with user info.
	URL string
	// Credential, when not nil, is handed to git when the upstream asks.
	Credential *Credential
	// Resolve pins the addresses git connects to, as curl's
	// CURLOPT_RESOLVE entries "host:port:addr[,addr]" (git's
	// http.curloptResolve): whoever checked the upstream's addresses
	// hands them over, so git does not look the host up again and
	// connect somewhere else (a DNS answer that changed in between).
	Resolve []string
}

// credentialHelper is the helper git asks for the upstream's credential. It
// answers a `get` with what the service wrote into the pipe git inherited as
// file descriptor 3, and only when git asks for the upstream's own protocol
// and host: after a redirect to another host (or another scheme), git asks
// for that one, and gets nothing. It ignores `store` and `erase`. The secret
// never reaches an argument, an environment variable or a file: only this
// pipe, which git's own remote helper (the process that asks) inherits, and
// which is read once. The helper before it is reset, so no configured helper
// hears of the upstream either.
func credentialHelper(upstream string) (string, error) {
	u, err := url.Parse(upstream)
	if err != nil || u.Host == "" {
		return "", &InvalidNameError{Kind: "upstream", Value: upstream, Reason: "must be a URL with a host"}
	}
	return `!f() { test "$1" = get || return 0; p=; h=; ` +
		`while IFS= read -r l && test -n "$l"; do case "$l" in protocol=*) p=${l#protocol=};; host=*) h=${l#host=};; esac; done; ` +
		`test "$p" = ` + shellQuote(u.Scheme) + ` && test "$h" = ` + shellQuote(u.Host) + ` && cat <&3; }; f`, nil
}

// shellQuote quotes s for sh as one word.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'" }

// fetchedMarker is the file in a mirror whose modification time is when the
// last fetch into it succeeded.
const fetchedMarker = "refkeeper-fetched"

// fetchConfig are the settings of every upstream fetch: protocol v2 (its
// ref-prefix filter keeps the listing to the refs asked for), no automatic
// maintenance (a fetch stays bounded; housekeeping runs on its own), no
// prompts or configured credential helpers, and no redirects: the upstream
// was checked against the service's policy, the target of a redirect was
// not (nor are http-alternates, which git follows only with redirects).
var fetchConfig = []string{
	"-c", "protocol.version=2",
	"-c", "maintenance.auto=false",
	"-c", "gc.auto=0",
	"-c", "fetch.writeCommitGraph=false",
	"-c", "credential.helper=",
	"-c", "core.askPass=",
	"-c", "http.followRedirects=false",
}

// transportConfig lets git use the upstream's own transport and no other
// (a redirect or a submodule cannot switch it to another), and pins the
// host's addresses.
func transportConfig(up Upstream) ([]string, error) {
	u, err := url.Parse(up.URL)
	if err != nil {
		return nil, &InvalidNameError{Kind: "upstream", Value: up.URL, Reason: "is not a URL"}
	}
	switch u.Scheme {
	case "http", "https", "file":
	default:
		return nil, &InvalidNameError{Kind: "upstream", Value: up.URL, Reason: "scheme must be http, https or file"}
	}
	args := []string{"-c", "protocol.allow=never", "-c", "protocol." + u.Scheme + ".allow=always"}
	for _, r := range up.Resolve {
		if strings.ContainsAny(r, " \t\r\n") {
			return nil, &InvalidNameError{Kind: "upstream resolution", Value: r, Reason: "has white space"}
		}
		args = append(args, "-c", "http.curloptResolve="+r)
	}
	return args, nil
}

// upstreamArgs are the git options of every process that talks to up:
// fetchConfig, the transport and its pinned addresses, and, with a
// credential, the helper that reads it from credPipe (to be handed to git
// as its file descriptor 3, and closed by the caller once git started).
func upstreamArgs(up Upstream) (args []string, credPipe *os.File, err error) {
	args = append([]string{}, fetchConfig...)
	transport, err := transportConfig(up)
	if err != nil {
		return nil, nil, err
	}
	args = append(args, transport...)
	if up.Credential == nil {
		return args, nil, nil
	}
	helper, err := credentialHelper(up.URL)
	if err != nil {
		return nil, nil, err
	}
	pipeR, pipeW, err := os.Pipe()
	if err != nil {
		return nil, nil, &StorageError{Op: "making the credential pipe", Err: err}
	}
	// A few dozen bytes: the pipe's buffer holds them, so the write does
	// not wait for a reader.
	_, werr := fmt.Fprintf(pipeW, "username=%s\npassword=%s\n", up.Credential.Username, up.Credential.Password)
	pipeW.Close()
	if werr != nil {
		pipeR.Close()
		return nil, nil, &StorageError{Op: "writing the credential pipe", Err: werr}
	}
	return append(args, "-c", "credential.helper="+helper), pipeR, nil
}

// checkRefspec accepts "<src>:<dst>" with an optional "+", where dst is not
// under refs/pipelines/ (the service's own refs, which a fetch must never
// touch), and a bare 40-hex SHA (fetch an object, write no ref).
func checkRefspec(spec string) error {
	if _, err := ParseObjectID(spec); err == nil {
		return nil
	}
	s := strings.TrimPrefix(spec, "+")
	src, dst, ok := strings.Cut(s, ":")
	if !ok || !strings.HasPrefix(src, "refs/") || !strings.HasPrefix(dst, "refs/") {
		return &InvalidRefspecError{Refspec: spec, Reason: "must be <refs/...>:<refs/...> or a 40-hex SHA"}
	}
	if strings.HasPrefix(dst, PipelineRefPrefix) || dst+"/" == PipelineRefPrefix {
		return &InvalidRefspecError{Refspec: spec, Reason: "a fetch never writes under " + PipelineRefPrefix}
	}
	if strings.ContainsAny(s, " \t\n\\^~?[") || strings.HasPrefix(spec, "-") {
		return &InvalidRefspecError{Refspec: spec, Reason: "has characters a ref cannot have"}
	}
	return nil
}

// fetch runs one `git fetch` from the upstream into the repository at dir,
// of exactly refspecs, bounded by ctx (git itself too: a clone may outlast
// --git-timeout, up to its own deadline). It waits for a turn among the
// Root's UpstreamFetches (*limits.BusyError when ctx ends first; turn, when
// not nil, says meanwhile that it waits), refuses to start below the DiskFloor and stops
// git when the free space drops below it (*limits.LowDiskError). What a
// failed or stopped git fetch left of its pack (objects/pack/tmp_pack_*)
// is removed. Its failures are classified:
// *UpstreamUnavailableError (unreachable, too slow, a 5xx),
// *UpstreamRejectedError (credentials refused, no such repository),
// *UpstreamRefNotFoundError (a ref or SHA the upstream lacks).
func (r *Root) fetch(ctx context.Context, dir string, up Upstream, refspecs []string, turn turnWatch) error {
	if len(refspecs) == 0 {
		return nil
	}
	for _, spec := range refspecs {
		if err := checkRefspec(spec); err != nil {
			return err
		}
	}
	ctx, release, err := r.upstreamTurn(ctx, turn)
	if err != nil {
		return err
	}
	defer release()
	before := tmpPacks(dir)
	args, pipeR, err := upstreamArgs(up)
	if err != nil {
		return err
	}
	if pipeR != nil {
		defer pipeR.Close()
	}
	args = append(args, "fetch", "--quiet", "--no-tags", "--no-write-fetch-head", "--no-recurse-submodules", "--", up.URL)
	args = append(args, refspecs...)
	bound := r.gitTimeout()
	if deadline, ok := ctx.Deadline(); ok {
		bound = time.Until(deadline) // the caller's bound, not --git-timeout
	}
	cmd := r.commandWithin(ctx, bound, dir, args...)
	if pipeR != nil {
		cmd.ExtraFiles = []*os.File{pipeR} // fd 3 in git and its children
	}
	var stderr gitexec.Stderr
	cmd.Stderr = &stderr
	start := time.Now()
	err = cmd.Run()
	if err == nil {
		// Its time is the last good fetch (git's own FETCH_HEAD is
		// rewritten by failed fetches too).
		if merr := os.WriteFile(filepath.Join(dir, fetchedMarker), nil, 0o644); merr != nil {
			r.logger().Warn("recording the fetch time", "dir", dir, "err", merr)
		}
		return nil
	}
	r.removeTmpPacks(dir, before)
	var low *limits.LowDiskError
	if errors.As(context.Cause(ctx), &low) {
		r.logger().Warn("upstream fetch stopped: the repos root fell below its free-space floor", "dir", dir, "err", low)
		return low
	}
	return classifyFetch(ctx, up.URL, stderr.String(), err, time.Since(start))
}

// turnWatch is how one upstream request takes its turn among
// --max-upstream-fetches: waiting is set while it waits for one, taken is
// called once it has one, and spare takes a turn only if one is free now
// (errNoSpareTurn otherwise): a probe asked alongside a fetch must never
// hold a turn a fetch waits for.
type turnWatch struct {
	waiting *atomic.Bool
	taken   func()
	spare   bool
}

// errNoSpareTurn: no turn was free for a request that may be skipped.
var errNoSpareTurn = errors.New("no upstream turn to spare")

// upstreamTurn waits for a turn among the Root's UpstreamFetches
// (*limits.BusyError when ctx ends first; turn, when not nil, says
// meanwhile that it waits) and refuses below the DiskFloor
// (*limits.LowDiskError), before and after the wait. The context it
// answers ends when the free space drops below the floor; release gives
// the turn back and stops that watch. Every request to an upstream (a
// fetch, a probe) takes one.
func (r *Root) upstreamTurn(ctx context.Context, turn turnWatch) (context.Context, func(), error) {
	if err := r.DiskFloor.Check(); err != nil {
		return ctx, nil, err
	}
	var release func()
	if turn.spare {
		ok := false
		if release, ok = r.UpstreamFetches.TryAcquire(); !ok {
			return ctx, nil, errNoSpareTurn
		}
	} else {
		if turn.waiting != nil {
			turn.waiting.Store(true)
		}
		var err error
		release, err = r.UpstreamFetches.Acquire(ctx)
		if turn.waiting != nil {
			turn.waiting.Store(false)
		}
		if err != nil {
			return ctx, nil, err
		}
	}
	if turn.taken != nil {
		turn.taken()
	}
	// Checked again: the turn may have come after a long wait.
	if err := r.DiskFloor.Check(); err != nil {
		release()
		return ctx, nil, err
	}
	ctx, stopWatch := r.DiskFloor.Watch(ctx, r.DiskPoll)
	return ctx, func() { stopWatch(); release() }, nil
}

// tmpPackGlob names the files git fetch writes a pack into before it is
// indexed and renamed (index-pack's tmp_pack_*, its tmp_idx_* and friends).
const tmpPackGlob = "tmp_*"

// tmpPacks lists the temporary pack files in the repository at dir now.
func tmpPacks(dir string) map[string]bool {
	names, _ := filepath.Glob(filepath.Join(dir, "objects", "pack", tmpPackGlob))
	set := make(map[string]bool, len(names))
	for _, n := range names {
		set[n] = true
	}
	return set
}

// removeTmpPacks removes the temporary pack files in dir that were not
// there before a fetch that failed: a killed git leaves them (git gc
// prunes them only after two weeks, and never in a staged mirror), and a
// stopped clone of a large upstream may have written gigabytes into them.
func (r *Root) removeTmpPacks(dir string, before map[string]bool) {
	for n := range tmpPacks(dir) {
		if before[n] {
			continue
		}
		if err := os.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.logger().Warn("removing what a failed fetch left", "file", n, "err", err)
		}
	}
}

// staleTmpPackAge is how old a temporary pack file in a staged mirror must
// be before a new clone takes it for a dead process's leftover.
const staleTmpPackAge = 10 * time.Minute

// removeStaleTmpPacks removes temporary pack files in dir older than
// staleTmpPackAge: what a clone left when its process died. A clone still
// writing its pack keeps touching it.
func (r *Root) removeStaleTmpPacks(dir string) {
	for n := range tmpPacks(dir) {
		st, err := os.Stat(n)
		if err != nil || time.Since(st.ModTime()) <= staleTmpPackAge {
			continue
		}
		if err := os.Remove(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			r.logger().Warn("removing what a dead clone left", "file", n, "err", err)
		}
	}
}

var (
	redirectRe   = regexp.MustCompile(`returned error: 3[0-9][0-9]`)
	missingRefRe = regexp.MustCompile(`couldn't find remote ref (\S+)`)
	notOurRefRe  = regexp.MustCompile(`not our ref ([0-9a-f]{40})`)
)

// classifyFetch turns a failed fetch into one of the upstream errors, from
// what git said (in the C locale).
func classifyFetch(ctx context.Context, url, stderr string, err error, took time.Duration) error {
	cause := fmt.Errorf("git fetch: %w: %s", err, stderr)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return &UpstreamUnavailableError{Upstream: url, Reason: fmt.Sprintf("no answer within %s", took.Round(time.Millisecond)),
			Err: errors.Join(ctxErr, cause)}
	}
	if redirectRe.MatchString(stderr) {
		return &UpstreamRedirectError{Upstream: url, Err: cause}
	}
	if m := missingRefRe.FindStringSubmatch(stderr); m != nil {
		return &UpstreamRefNotFoundError{Upstream: url, Ref: m[1]}
	}
	if m := notOurRefRe.FindStringSubmatch(stderr); m != nil {
		return &UpstreamRefNotFoundError{Upstream: url, Ref: m[1]}
	}
	has := func(subs ...string) bool {
		for _, s := range subs {
			if strings.Contains(stderr, s) {
				return true
			}
		}
		return false
	}
	switch {
	case has("Authentication failed", "could not read Username", "could not read Password",
		"returned error: 401", "returned error: 403"):
		return &UpstreamRejectedError{Upstream: url, Reason: "credentials refused", Err: cause}
	case has("not found", "returned error: 404", "does not appear to be a git repository", "not a git repository"):
		return &UpstreamRejectedError{Upstream: url, Reason: "no such repository", Err: cause}
	case has("Could not resolve", "Failed to connect", "Couldn't connect", "Connection refused", "timed out",
		"returned error: 5", "Empty reply", "RPC failed", "early EOF", "hung up", "SSL", "Recv failure", "Send failure"):
		return &UpstreamUnavailableError{Upstream: url, Reason: "unreachable", Err: cause}
	}
	// Anything else (a killed process, a disk full while writing the pack)
	// is not the upstream's answer: retrying may help.
	return &UpstreamUnavailableError{Upstream: url, Reason: "fetch failed", Err: cause}
}

// Fetcher fetches upstream refs into mirrors, one fetch in flight per
// repository: callers arriving while one runs share the next one, which
// fetches everything they asked for. So any number of concurrent callers
// cause at most two fetches, and none of them waits for more than the one
// running plus its own.
type Fetcher struct {
	Root *Root
	// Timeout bounds one fetch. Zero: DefaultUpstreamTimeout.
	Timeout time.Duration
	// Lease, when set, makes the processes sharing the repos root take
	// turns fetching into a mirror and share what they fetched (see
	// FetchLease). Nil: fetches are shared within this process only.
	Lease FetchLease
	// LeasePoll is how often a process waiting for another's fetch asks
	// again. Zero: DefaultLeasePoll.
	LeasePoll time.Duration

	mu     sync.Mutex
	groups map[string]*fetchGroup // by repository directory
	// suspect holds, by repository directory, until when its batches ask
	// the upstream which SHAs it has before they fetch: one of its fetches
	// lately met a SHA the upstream lacks (see runBatch).
	suspect map[string]time.Time
	// MissingFor is how long a SHA the upstream just said it lacks is
	// answered so without asking again (see absentSHA). Zero:
	// DefaultMissingFor.
	MissingFor time.Duration
	// absent holds, by repository directory and SHA, the SHAs the upstream
	// lately said it lacks: when that was, and the error it gave.
	absent map[absentKey]absentSHA
	// RefusedPace is the first step of the pace of a repository whose
	// upstream refused its fetch (see paced): no request reaches the
	// upstream within it. Zero: DefaultRefusedPace.
	RefusedPace time.Duration
	// refused holds, by repository directory, the upstream's last refusal
	// and its pace.
	refused map[string]*refusal
}

// DefaultMissingFor is how long a SHA the upstream lacks is remembered so.
const DefaultMissingFor = 5 * time.Second

// maxAbsent bounds what the Fetcher remembers of missing SHAs: beyond it,
// the ones remembered longest ago go first, and a SHA not remembered is
// simply asked again.
const maxAbsent = 4096

type absentKey struct{ dir, sha string }

type absentSHA struct {
	at  time.Time
	err error
}

func (f *Fetcher) missingFor() time.Duration {
	if f.MissingFor > 0 {
		return f.MissingFor
	}
	return DefaultMissingFor
}

// knownAbsent answers the error the upstream gave for a SHA among refspecs
// within MissingFor, nil when there is none. A caller asking for it again
// is answered at once, without joining a batch: one caller repeating a SHA
// the upstream does not have makes the upstream no new request, and no
// other caller's fetch carries it.
func (f *Fetcher) knownAbsent(dir string, refspecs []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, spec := range refspecs {
		if a, ok := f.absent[absentKey{dir, spec}]; ok {
			if time.Since(a.at) < f.missingFor() {
				return a.err
			}
			delete(f.absent, absentKey{dir, spec})
		}
	}
	return nil
}

// noteAbsent remembers the SHAs a batch into dir found missing upstream,
// and forgets those it fetched.
func (f *Fetcher) noteAbsent(dir string, b *fetchBatch) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, want := range b.wants {
		if b.outcome(i) == nil {
			for _, spec := range want {
				delete(f.absent, absentKey{dir, spec})
			}
		}
	}
	now := time.Now()
	for ref, err := range b.missing {
		if _, perr := ParseObjectID(ref); perr != nil {
			continue // a ref may appear any moment: asked every time
		}
		if f.absent == nil {
			f.absent = make(map[absentKey]absentSHA)
		}
		if len(f.absent) >= maxAbsent {
			f.pruneAbsentLocked(now)
		}
		f.absent[absentKey{dir, ref}] = absentSHA{at: now, err: err}
	}
}

// pruneAbsentLocked drops what is too old to be answered, then, if still
// full, the oldest half.
func (f *Fetcher) pruneAbsentLocked(now time.Time) {
	for k, a := range f.absent {
		if now.Sub(a.at) >= f.missingFor() {
			delete(f.absent, k)
		}
	}
	if len(f.absent) < maxAbsent {
		return
	}
	ats := make([]time.Time, 0, len(f.absent))
	for _, a := range f.absent {
		ats = append(ats, a.at)
	}
	slices.SortFunc(ats, func(a, b time.Time) int { return a.Compare(b) })
	median := ats[len(ats)/2]
	for k, a := range f.absent {
		if !a.at.After(median) {
			delete(f.absent, k)
		}
	}
}

// ForgetMissing drops what the Fetcher remembers of mirror name's
// upstream, the SHAs it lacks and its refusal's pace: its upstream or
// credential may have changed.
func (f *Fetcher) ForgetMissing(name ProjectName) {
	if f == nil {
		return
	}
	dirs := []string{f.Root.livePath(name), f.Root.stagingPath(name)}
	if path, err := f.Root.RepoPath(name); err == nil {
		dirs = append(dirs, path) // symlinks resolved: what FetchMirror fetches into
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for k := range f.absent {
		if slices.Contains(dirs, k.dir) {
			delete(f.absent, k)
		}
	}
	for _, dir := range dirs {
		delete(f.refused, dir)
	}
}

// DefaultRefusedPace is the first step of a refused upstream's pace when
// Fetcher.RefusedPace does not say.
const DefaultRefusedPace = 5 * time.Second

// maxRefusedPaceFactor bounds the doubling steps: at most this many times
// the first step (5 minutes for the default 5 s).
const maxRefusedPaceFactor = 60

// RetryLaterError is an upstream's refusal (Err, an *UpstreamRejectedError)
// with how long no request of this repository reaches that upstream again
// (Wait): the refusal just heard, or the last one, answered again within
// its pace without asking.
type RetryLaterError struct {
	Err  error
	Wait time.Duration
}

func (e *RetryLaterError) Error() string { return e.Err.Error() }

func (e *RetryLaterError) Unwrap() error { return e.Err }

// refusal is the last time an upstream refused a repository's fetch, with
// the same upstream and credential (print) as now.
type refusal struct {
	// print tells the upstream and credential refused apart from others;
	// a digest of the secret, kept in this memory only, never written.
	print string
	at    time.Time
	step  time.Duration // no request before at+step
	err   error
}

// upstreamPrint identifies up's URL and credential, to tell whether what a
// fetch presents is what the upstream refused.
func upstreamPrint(up Upstream) string {
	h := sha256.New()
	h.Write([]byte(up.URL + "\x00"))
	if c := up.Credential; c != nil {
		h.Write([]byte("\x01" + c.Username + "\x00" + c.Password))
	}
	return string(h.Sum(nil))
}

func (f *Fetcher) refusedPace() time.Duration {
	if f.RefusedPace > 0 {
		return f.RefusedPace
	}
	return DefaultRefusedPace
}

// paced answers the upstream's last refusal of a fetch into dir, as a
// *RetryLaterError, while its pace holds and up presents the same URL and
// credential; nil when a request may go. An upstream that refuses the
// credential (or says the repository is not there, which hosts answer a
// credential without access to it) answers the same to every request
// until someone changes the credential: asked again at the rate callers
// pin, it may lock the account out or block the service. So within the
// pace nothing reaches it, whatever the callers ask for. The pace starts at
// RefusedPace and doubles with each refusal heard after it, up to
// maxRefusedPaceFactor times it; a request the upstream takes (a fetch, a
// probe, or one answering that a ref is missing), another URL or
// credential, or ForgetMissing ends it.
func (f *Fetcher) paced(dir string, up Upstream) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.refused[dir]
	if !ok {
		return nil
	}
	if r.print != upstreamPrint(up) {
		delete(f.refused, dir)
		return nil
	}
	if left := time.Until(r.at.Add(r.step)); left > 0 {
		return &RetryLaterError{Err: r.err, Wait: left}
	}
	return nil // the next try: its answer sets the pace again
}

// noteAnswer keeps what the upstream's answer to a request into dir says
// of the pace, and answers err, a refusal as a *RetryLaterError.
func (f *Fetcher) noteAnswer(dir string, up Upstream, err error) error {
	var (
		rejected *UpstreamRejectedError
		missing  *UpstreamRefNotFoundError
	)
	switch {
	case errors.As(err, &rejected):
		return f.noteRefusal(dir, up, err)
	case err == nil, errors.As(err, &missing):
		f.mu.Lock()
		delete(f.refused, dir)
		f.mu.Unlock()
	}
	// Anything else (an upstream down, a busy service) says nothing of
	// the credential.
	return err
}

// noteRefusal starts or doubles dir's pace for the upstream's refusal err.
// A refusal heard within the pace (a request of the same batch, sent
// alongside) leaves it as it is.
func (f *Fetcher) noteRefusal(dir string, up Upstream, err error) error {
	now, print := time.Now(), upstreamPrint(up)
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.refused[dir]
	switch {
	case !ok || r.print != print:
		r = &refusal{print: print, step: f.refusedPace()}
	case now.Before(r.at.Add(r.step)):
		return &RetryLaterError{Err: err, Wait: r.at.Add(r.step).Sub(now)}
	default:
		r.step = min(2*r.step, maxRefusedPaceFactor*f.refusedPace())
	}
	r.at, r.err = now, err
	if f.refused == nil {
		f.refused = make(map[string]*refusal)
	}
	f.refused[dir] = r
	return &RetryLaterError{Err: err, Wait: r.step}
}

// refusedLast reports whether the upstream's last answer to a request into
// dir was a refusal of up's URL and credential (its pace may have ended:
// the request now is the next try). Such a try is the fetch alone, with no
// probe alongside: the probe would go out before the fetch's refusal is
// heard, and present the refused credential a second time in the try.
// Should the host have taken the credential back meanwhile, a batch whose
// fetch then meets a missing SHA asks the probe after the fetch: one more
// upstream round trip in a row, for that one batch (the fetch's answer
// ends the record). A credential changed in the credentials file changes
// the print, which drops the record (paced): the probe goes alongside again.
func (f *Fetcher) refusedLast(dir string, up Upstream) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, ok := f.refused[dir]
	return ok && r.print == upstreamPrint(up)
}

// upstreamFetch is Root.fetch within dir's refusal pace (see paced).
func (f *Fetcher) upstreamFetch(ctx context.Context, dir string, up Upstream, refspecs []string, turn turnWatch) error {
	if err := f.paced(dir, up); err != nil {
		return err
	}
	return f.noteAnswer(dir, up, f.Root.fetch(ctx, dir, up, refspecs, turn))
}

// upstreamProbe is Root.probe within dir's refusal pace (see paced).
func (f *Fetcher) upstreamProbe(ctx context.Context, dir string, up Upstream, ids []string, turn turnWatch) (map[string]bool, error) {
	if err := f.paced(dir, up); err != nil {
		return nil, err
	}
	present, err := f.Root.probe(ctx, dir, up, ids, turn)
	return present, f.noteAnswer(dir, up, err)
}

// suspectFor is how long a repository whose fetch met a missing SHA has
// its batches of several callers probe first.
const suspectFor = time.Minute

// probeFirst reports whether a batch into dir probes before it fetches:
// it has more than one caller's SHAs and dir met a missing SHA lately.
func (f *Fetcher) probeFirst(dir string, b *fetchBatch) bool {
	if b.callersWithSHA() < 2 {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	until, ok := f.suspect[dir]
	if ok && time.Now().After(until) {
		delete(f.suspect, dir)
		return false
	}
	return ok
}

// callersWithSHA counts the wants of the batch that name a SHA: a batch of
// several such callers is where one caller's missing SHA can fail another's
// fetch.
func (b *fetchBatch) callersWithSHA() int {
	n := 0
	for _, specs := range b.wants {
		if len(b.shasOf(specs)) > 0 {
			n++
		}
	}
	return n
}

// shasOf answers the refspecs that are SHAs.
func (b *fetchBatch) shasOf(specs []string) []string {
	var shas []string
	for _, spec := range specs {
		if _, err := ParseObjectID(spec); err == nil {
			shas = append(shas, spec)
		}
	}
	return shas
}

// markSuspect makes dir's batches probe first for a while.
func (f *Fetcher) markSuspect(dir string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.suspect == nil {
		f.suspect = make(map[string]time.Time)
	}
	f.suspect[dir] = time.Now().Add(suspectFor)
}

// DefaultUpstreamTimeout bounds one upstream fetch when nothing else says.
const DefaultUpstreamTimeout = 60 * time.Second

// fetchGroup is one repository's flight: whether a fetch runs, and the batch
// gathering the callers for the next one.
type fetchGroup struct {
	name    ProjectName // "" for a repository that is no mirror in place
	running bool
	next    *fetchBatch
}

// fetchBatch is one fetch and the callers who share it.
type fetchBatch struct {
	up       Upstream
	refspecs []string
	seen     map[string]bool
	callers  int
	// wants are the callers' own refspecs, one entry per distinct list
	// (callers asking for the same share it); each caller knows its index.
	wants   [][]string
	wantIdx map[string]int
	// With a lease: any fetch numbered above need began after the first
	// covered callers joined (see await).
	need    int64
	covered int
	// waitingTurn is set while its git fetch waits for a turn among the
	// Root's UpstreamFetches: a caller whose deadline passes then is told
	// the service was busy, not that the upstream did not answer.
	waitingTurn atomic.Bool
	done        chan struct{}
	// after done: the outcome. A ref missing upstream fails only the
	// callers who asked for it (missing); err fails everyone else, unless
	// the batch was split (split: each want's own fetch answered it, in
	// results), and rounds says how many fetches in a row each want's
	// answer waited on.
	missing map[string]error
	err     error
	split   bool
	results []error
	rounds  []int
}

// join adds a caller's refspecs to the batch and answers the index of its
// want.
func (b *fetchBatch) join(refspecs []string) int {
	key := strings.Join(refspecs, "\n")
	i, ok := b.wantIdx[key]
	if !ok {
		i = len(b.wants)
		b.wants = append(b.wants, refspecs)
		b.wantIdx[key] = i
	}
	for _, spec := range refspecs {
		if !b.seen[spec] {
			b.seen[spec] = true
			b.refspecs = append(b.refspecs, spec)
		}
	}
	return i
}

// outcome is what the batch answers the caller of want i.
func (b *fetchBatch) outcome(i int) error {
	for _, spec := range b.wants[i] {
		if err, ok := b.missing[refspecSource(spec)]; ok {
			return err
		}
	}
	if b.split {
		return b.results[i]
	}
	return b.err
}

func (f *Fetcher) timeout() time.Duration {
	if f.Timeout > 0 {
		return f.Timeout
	}
	return DefaultUpstreamTimeout
}

// Fetch fetches refspecs from up into the repository at dir (see fetch for
// the errors; an upstream's refusal comes as *RetryLaterError, see
// paced). The fetch is shared with concurrent callers for the same
// directory and bounded by the Fetcher's Timeout, not by ctx: a caller that
// gives up returns ctx's error, and the others still get their fetch.
func (f *Fetcher) Fetch(ctx context.Context, dir string, up Upstream, refspecs []string) error {
	return f.fetchShared(ctx, "", dir, up, refspecs)
}

// fetchShared is Fetch for the mirror name at dir ("" for none: then no
// lease is taken).
func (f *Fetcher) fetchShared(ctx context.Context, name ProjectName, dir string, up Upstream, refspecs []string) error {
	_, err := f.fetchCounted(ctx, name, dir, up, refspecs)
	return err
}

// fetchCounted is fetchShared that also says how many upstream fetches in
// a row the answer waited on in its own batch (not counting a fetch that
// was running when the caller came).
func (f *Fetcher) fetchCounted(ctx context.Context, name ProjectName, dir string, up Upstream, refspecs []string) (rounds int, err error) {
	for _, spec := range refspecs {
		if err := checkRefspec(spec); err != nil {
			return 0, err
		}
	}
	if err := f.knownAbsent(dir, refspecs); err != nil {
		return 0, err
	}
	// Answered at once within a refusal's pace; callers who joined a
	// batch before the refusal get it when their batch's turn comes
	// (upstreamFetch), one answer for all of them.
	if err := f.paced(dir, up); err != nil {
		return 0, err
	}
	f.mu.Lock()
	if f.groups == nil {
		f.groups = make(map[string]*fetchGroup)
	}
	g := f.groups[dir]
	if g == nil {
		g = &fetchGroup{name: name}
		f.groups[dir] = g
	}
	if g.next == nil {
		g.next = &fetchBatch{seen: make(map[string]bool), wantIdx: make(map[string]int), done: make(chan struct{})}
	}
	b := g.next
	b.callers++
	b.up = up // the latest word on the upstream (a rotated credential) wins
	want := b.join(refspecs)
	if !g.running {
		g.running = true
		if !f.leased(g) {
			g.next = nil
		} // else it stays open while the lease is waited for
		go f.run(dir, g, b)
	}
	f.mu.Unlock()

	select {
	case <-b.done:
	case <-ctx.Done():
		if b.waitingTurn.Load() {
			return 0, &limits.BusyError{What: f.Root.UpstreamFetches.What, Limit: f.Root.UpstreamFetches.Limit(), Cause: ctx.Err()}
		}
		return 0, ctx.Err()
	}
	if want < len(b.rounds) {
		rounds = b.rounds[want]
	}
	return rounds, b.outcome(want)
}

// run fetches batch after batch for one repository until no caller waits.
// With a lease, a batch stays open (callers keep joining it) until this
// process has the lease or another's fetch made it unnecessary.
func (f *Fetcher) run(dir string, g *fetchGroup, b *fetchBatch) {
	for {
		ctx, cancel := context.WithTimeout(context.Background(), f.timeout())
		var release func(ok bool)
		skip := false
		if f.leased(g) {
			skip, release, b.err = f.await(ctx, g, b)
			f.mu.Lock()
			if g.next == b {
				g.next = nil
			}
			f.mu.Unlock()
		}
		if !skip && b.err == nil {
			f.runBatch(ctx, dir, b)
			f.noteAbsent(dir, b)
		}
		if release != nil {
			release(b.err == nil && len(b.missing) == 0)
		}
		cancel()
		close(b.done)
		f.mu.Lock()
		if g.next == nil {
			g.running = false
			delete(f.groups, dir)
			f.mu.Unlock()
			return
		}
		b = g.next
		if !f.leased(g) {
			g.next = nil
		}
		f.mu.Unlock()
	}
}

// runBatch fetches a batch's refspecs in one fetch. A ref or SHA the
// upstream lacks fails that whole git fetch, and git names only the first
// one; retrying without it, one missing SHA at a time, would make every
// caller of the batch wait for as many fetches as there are missing SHAs.
// So the one named is set aside for the callers who asked for it, the
// upstream is asked in one round which of the other SHAs it has (probe),
// those it lacks are set aside too, and the rest is fetched together. Where
// the upstream cannot be asked, or that fetch still names a missing ref,
// every remaining caller's own refspecs are fetched at once, each list in a
// fetch of its own. Either way one caller's missing SHAs cost another a
// bounded number of upstream round trips in a row, however many of them
// share the batch: two. A batch of several callers' SHAs asks the probe
// alongside its fetch (probeAlong), so a fetch that fails has its answer
// at hand (the failed fetch with the probe, then the fetch); while missing
// SHAs keep coming it probes first (probeFirst: the probe, then the fetch).
// The probe alongside costs the upstream one cheap request per such batch
// and is stopped when the fetch succeeds. It is not asked while the
// upstream's last answer was a refusal of what the batch presents
// (refusedLast): the try after a refusal's pace is the fetch alone, which
// may cost that one batch a third round trip (see there).
func (f *Fetcher) runBatch(ctx context.Context, dir string, b *fetchBatch) {
	b.rounds = make([]int, len(b.wants))
	rest := seq(len(b.wants))
	b.results = make([]error, len(b.wants))
	// While missing SHAs keep coming (a caller sending bogus ones), a
	// batch of several callers asks first, saving the fetch that would
	// fail.
	var along <-chan probeAnswer
	if !f.probeFirst(dir, b) {
		for i := range b.rounds {
			b.rounds[i] = 1
		}
		turn := turnWatch{waiting: &b.waitingTurn}
		stopAlong := func() {}
		if b.callersWithSHA() > 1 && !f.refusedLast(dir, b.up) {
			// The probe starts once the fetch holds its turn, and only on
			// a turn that is free then: it never delays the fetch.
			alongCtx, stop := context.WithCancel(ctx)
			defer stop() // the answer is read
			stopAlong = stop
			held := make(chan struct{})
			turn.taken = sync.OnceFunc(func() { close(held) })
			along = f.probeAlong(alongCtx, dir, b, rest, held)
		}
		err := f.upstreamFetch(ctx, dir, b.up, b.refspecs, turn)
		var missing *UpstreamRefNotFoundError
		if !errors.As(err, &missing) {
			stopAlong()
			b.err = err
			return
		}
		if _, err := ParseObjectID(missing.Ref); err == nil {
			f.markSuspect(dir)
		}
		rest = b.without(missing.Ref, err, rest)
		if len(rest) == len(b.wants) { // git named a ref nobody asked for
			stopAlong()
			b.err = err
			return
		}
	}
	b.split = true
	var missing *UpstreamRefNotFoundError
	if probed, ok := f.setAsideAbsent(ctx, dir, b, rest, along); ok {
		rest = probed
		if len(rest) == 0 {
			return
		}
		var specs []string
		for _, i := range rest {
			b.rounds[i]++
			specs = append(specs, b.wants[i]...)
		}
		err := f.upstreamFetch(ctx, dir, b.up, slices.Compact(slices.Sorted(slices.Values(specs))), turnWatch{waiting: &b.waitingTurn})
		if !errors.As(err, &missing) {
			for _, i := range rest {
				b.results[i] = err
			}
			return
		}
		rest = b.without(missing.Ref, err, rest)
	}
	var wg sync.WaitGroup
	for _, lane := range lanes(b.wants, rest) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n, i := range lane {
				b.rounds[i] += 1 + n
				b.results[i] = f.upstreamFetch(ctx, dir, b.up, b.wants[i], turnWatch{waiting: &b.waitingTurn})
			}
		}()
	}
	wg.Wait()
}

// seq is 0, 1, …, n-1.
func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// without records that the upstream lacks ref (err says so to its
// callers) and answers the wants at idx that do not ask for it.
func (b *fetchBatch) without(ref string, err error, idx []int) []int {
	if b.missing == nil {
		b.missing = make(map[string]error)
	}
	b.missing[ref] = err
	var rest []int
	for _, i := range idx {
		if !slices.ContainsFunc(b.wants[i], func(spec string) bool { return refspecSource(spec) == ref }) {
			rest = append(rest, i)
		}
	}
	return rest
}

// probeAnswer is what the upstream said of which SHAs it has.
type probeAnswer struct {
	present map[string]bool
	err     error
}

// probeAlong asks the upstream which SHAs of the wants at idx it has, while
// the batch's fetch runs: its answer is at hand if that fetch fails on a
// missing SHA. It starts once the fetch holds its turn (held), on a spare
// turn or not at all (errNoSpareTurn: setAsideAbsent asks after the
// fetch). ctx ends it when the fetch needs no answer.
func (f *Fetcher) probeAlong(ctx context.Context, dir string, b *fetchBatch, idx []int, held <-chan struct{}) <-chan probeAnswer {
	var shas []string
	for _, i := range idx {
		shas = append(shas, b.shasOf(b.wants[i])...)
	}
	answer := make(chan probeAnswer, 1)
	go func() {
		select {
		case <-held:
		case <-ctx.Done():
			answer <- probeAnswer{err: ctx.Err()}
			return
		}
		present, err := f.upstreamProbe(ctx, dir, b.up, slices.Compact(slices.Sorted(slices.Values(shas))), turnWatch{spare: true})
		answer <- probeAnswer{present, err}
	}()
	return answer
}

// setAsideAbsent sets aside the wants at idx naming a SHA the upstream
// lacks and answers the others. It asks the upstream in one more round
// which SHAs it has, or takes the answer of a probe asked alongside the
// fetch that failed (along; it asked of a superset of idx's SHAs). ok is
// false when the upstream could not be asked.
func (f *Fetcher) setAsideAbsent(ctx context.Context, dir string, b *fetchBatch, idx []int, along <-chan probeAnswer) (rest []int, ok bool) {
	var shas []string
	for _, i := range idx {
		shas = append(shas, b.shasOf(b.wants[i])...)
	}
	if len(shas) == 0 {
		return idx, true
	}
	var answer probeAnswer
	if along != nil {
		answer = <-along
	}
	if along == nil || errors.Is(answer.err, errNoSpareTurn) {
		for _, i := range idx {
			b.rounds[i]++
		}
		answer.present, answer.err = f.upstreamProbe(ctx, dir, b.up, slices.Compact(slices.Sorted(slices.Values(shas))), turnWatch{})
	}
	if answer.err != nil {
		var paced *RetryLaterError // a refusal: its callers are told
		if !errors.Is(answer.err, ErrProbeUnsupported) && !errors.As(answer.err, &paced) {
			f.Root.logger().Warn("asking the upstream which objects it has", "upstream", b.up.URL, "err", answer.err)
		}
		return idx, false
	}
	rest = idx
	for _, sha := range shas {
		if !answer.present[sha] {
			rest = b.without(sha, &UpstreamRefNotFoundError{Upstream: b.up.URL, Ref: sha}, rest)
		}
	}
	return rest, true
}

// lanes groups the wants at idx into lanes that may fetch at the same
// time: wants writing a same ref (two fetches would fight over its lock)
// share a lane and fetch one after another. A SHA writes no ref, so wants
// of SHAs, the usual pins, each get a lane of their own.
func lanes(wants [][]string, idx []int) [][]int {
	var out [][]int
	laneOf := map[string]int{} // a written ref -> its lane
	for _, i := range idx {
		lane := -1
		for _, spec := range wants[i] {
			l, ok := laneOf[refspecDestination(spec)]
			switch {
			case !ok || l == lane:
			case lane < 0:
				lane = l
			default: // the want joins two lanes: one takes the other's
				out[lane] = append(out[lane], out[l]...)
				out[l] = nil
				for dst, at := range laneOf {
					if at == l {
						laneOf[dst] = lane
					}
				}
			}
		}
		if lane < 0 {
			lane = len(out)
			out = append(out, nil)
		}
		out[lane] = append(out[lane], i)
		for _, spec := range wants[i] {
			if dst := refspecDestination(spec); dst != "" {
				laneOf[dst] = lane
			}
		}
	}
	return slices.DeleteFunc(out, func(l []int) bool { return len(l) == 0 })
}

// refspecDestination is the ref a refspec writes, "" for a SHA.
func refspecDestination(spec string) string {
	_, dst, _ := strings.Cut(strings.TrimPrefix(spec, "+"), ":")
	return dst
}

// Queued counts the callers waiting for the next fetch into the repository
// at dir (not those of the fetch running): what coalescing saves. settled
// is false while, with a lease, some of them joined after it was last
// asked (so a fetch of another process could not count for them yet).
func (f *Fetcher) Queued(dir string) (callers int, settled bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if g := f.groups[dir]; g != nil && g.next != nil {
		return g.next.callers, !f.leased(g) || g.next.covered == g.next.callers
	}
	return 0, true
}

// refspecSource is what a refspec fetches: its source ref, or the SHA.
func refspecSource(spec string) string {
	src, _, _ := strings.Cut(strings.TrimPrefix(spec, "+"), ":")
	return src
}

package packcache

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refkeeper/refkeeper/gitexec"
)

// Config is what Open needs.
type Config struct {
	// Dir holds the entries, in a directory of this process's own below
	// it. Empty: the cache is off and every request bypasses it.
	Dir string
	// MaxBytes bounds the entries' total size: past it the oldest finished
	// entries are removed. Zero: 10 GiB.
	MaxBytes int64
	// MaxAge is how long an entry is served again. Zero: 10 minutes.
	MaxAge time.Duration
	// BelowFloor reports whether the disk is below the free-space floor
	// the service keeps (--min-free-disk): then fetches bypass the cache
	// rather than fill the disk or fail. Nil: never.
	BelowFloor func() bool
	// Hook is the command upload-pack runs as its pack-objects hook: an
	// executable and the arguments that make it run RunHook (this binary
	// and "pack-objects-hook"). Required unless the cache is off.
	Hook []string
	// Git runs pack-objects. Its Timeout bounds each generation.
	Git *gitexec.Runner
	// SocketDir is where the directory of the hook's socket is made.
	// Empty: the system's temporary directory (a socket's path is limited
	// to about 100 bytes, which a deep cache directory could pass).
	SocketDir string
	// Logger: nil means slog.Default().
	Logger *slog.Logger
	// Registerer receives the metrics. Nil: none registered.
	Registerer prometheus.Registerer
}

// Defaults of the flags.
const (
	DefaultMaxBytes = 10 << 30
	DefaultMaxAge   = 10 * time.Minute
)

// TicketEnv names the variable that carries a request's ticket to the
// hook. It is in the environment of git, not on a command line, so no
// other user of the host reads it from the process list.
const TicketEnv = "PACKCACHE_TICKET"

// Cache is the pack cache of one process. The zero value is not usable:
// Open makes one.
type Cache struct {
	cfg     Config
	logger  *slog.Logger
	metrics *metrics
	off     bool

	dir      string   // this process's own directory below cfg.Dir
	lock     *os.File // holds the flock on dir
	sockDir  string
	sockPath string
	listener *net.UnixListener

	ctx    context.Context // ends at Close: generations stop then
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.Mutex
	conns   map[*net.UnixConn]bool // the hooks being answered
	entries map[string]*entry      // by key
	tickets map[string]ticket
	total   int64 // bytes of the entries' files
	seq     uint64
}

// ticket is what one `git http-backend` run may ask of the cache.
type ticket struct {
	repoPath string
	project  string
	version  int
}

// Open starts the cache: its directory cleared of what dead processes
// left, its socket listening. With cfg.Dir empty it answers a cache that
// is off (its metrics registered all the same).
func Open(cfg Config) (*Cache, error) {
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	if cfg.Git == nil {
		cfg.Git = &gitexec.Runner{}
	}
	c := &Cache{cfg: cfg, logger: cfg.Logger, metrics: newMetrics(cfg.Registerer),
		entries: map[string]*entry{}, tickets: map[string]ticket{}, conns: map[*net.UnixConn]bool{}}
	if c.logger == nil {
		c.logger = slog.Default()
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	if cfg.Dir == "" {
		c.off = true
		return c, nil
	}
	if len(cfg.Hook) == 0 {
		return nil, errors.New("packcache: the hook command is required")
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("pack cache: %w", err)
	}
	removeStale(cfg.Dir, c.logger)
	dir, err := os.MkdirTemp(cfg.Dir, "proc-")
	if err != nil {
		return nil, fmt.Errorf("pack cache: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
	}
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pack cache: locking %s: %w", dir, err)
	}
	c.dir, c.lock = dir, lock
	// The socket's directory is 0700: only this user reaches the socket at
	// all; the peer check and the tickets do the rest.
	if c.sockDir, err = os.MkdirTemp(cfg.SocketDir, "refkeeper-pack-"); err != nil {
		c.Close()
		return nil, fmt.Errorf("pack cache: %w", err)
	}
	c.sockPath = filepath.Join(c.sockDir, "hook.sock")
	if c.listener, err = net.ListenUnix("unix", &net.UnixAddr{Name: c.sockPath, Net: "unix"}); err != nil {
		c.Close()
		return nil, fmt.Errorf("pack cache: %w", err)
	}
	c.wg.Add(2)
	go c.serve()
	go c.janitor()
	return c, nil
}

// removeStale removes the directories of processes that are gone: their
// lock is free. A live process's directory is locked and kept, so
// replicas may share Dir.
func removeStale(root string, logger *slog.Logger) {
	dirs, err := os.ReadDir(root)
	if err != nil {
		return
	}
	for _, d := range dirs {
		if !d.IsDir() || !strings.HasPrefix(d.Name(), "proc-") {
			continue
		}
		path := filepath.Join(root, d.Name())
		f, err := os.OpenFile(filepath.Join(path, "lock"), os.O_RDWR, 0)
		if err == nil {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		}
		if errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			continue // alive
		}
		if f != nil {
			f.Close()
		}
		if err := os.RemoveAll(path); err != nil {
			logger.Warn("pack cache: removing a dead process's entries", "dir", path, "err", err)
		}
	}
}

// Close stops the socket, every hook's answer and every generation, and
// removes the entries.
func (c *Cache) Close() error {
	c.cancel()
	if c.listener != nil {
		c.listener.Close()
	}
	// A hook whose upload-pack stopped reading would hold its answer (a
	// write to the socket) forever.
	c.mu.Lock()
	for conn := range c.conns {
		conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
	if c.sockDir != "" {
		os.RemoveAll(c.sockDir)
	}
	if c.dir != "" {
		os.RemoveAll(c.dir)
	}
	if c.lock != nil {
		c.lock.Close()
	}
	return nil
}

// Hook answers the environment that makes the `git http-backend` run of
// one upload-pack request (protocol version) on repoPath, the repository
// of project, hand its pack-objects to the cache, and a release to call
// when that run is over (its ticket then dies). ok is false when the
// request bypasses the cache (off, or the disk below its floor): run git
// as without it.
func (c *Cache) Hook(repoPath, project string, version int) (env []string, release func(), ok bool) {
	if c.off || c.belowFloor() {
		c.metrics.result("bypass")
		return nil, nil, false
	}
	var raw [16]byte
	if _, err := rand.Read(raw[:]); err != nil {
		c.metrics.result("bypass")
		return nil, nil, false
	}
	t := hex.EncodeToString(raw[:])
	c.mu.Lock()
	c.tickets[t] = ticket{repoPath: repoPath, project: project, version: version}
	c.mu.Unlock()
	hook := make([]string, 0, len(c.cfg.Hook)+1)
	for _, a := range append(append(hook, c.cfg.Hook...), c.sockPath) {
		hook = append(hook, shellQuote(a))
	}
	env = append(gitexec.ConfigEnv([][2]string{{"uploadpack.packObjectsHook", strings.Join(hook, " ")}}),
		TicketEnv+"="+t)
	return env, func() {
		c.mu.Lock()
		delete(c.tickets, t)
		c.mu.Unlock()
	}, true
}

func (c *Cache) belowFloor() bool {
	return c.cfg.BelowFloor != nil && c.cfg.BelowFloor()
}

// take answers a live ticket's request and ends the ticket: upload-pack
// runs pack-objects once per request.
func (c *Cache) take(t string) (ticket, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	tk, ok := c.tickets[t]
	delete(c.tickets, t)
	return tk, ok
}

// shellQuote quotes a word for sh: upload-pack runs its hook through the
// shell.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// knownFlags are the pack-objects options upload-pack gives (git 2.39 and
// later) that the cache serves: with them a pack is a function of the
// stdin's objects alone. Others bypass it: --include-tag (the pack would
// depend on the tags of the moment, which the key does not hold; fetch
// tokens never send it), --filter, --uri-protocol, what git may add.
var knownFlags = map[string]bool{
	"--revs": true, "--thin": true, "--stdout": true, "--shallow": true,
	"--progress": true, "--delta-base-offset": true,
}

// packArgs checks the command upload-pack asked its hook to run ("git",
// optionally "--shallow-file" "", "pack-objects", options) and answers
// the arguments for git after the executable, without --progress: the
// progress lines are not kept, so they are not part of the key either.
func packArgs(args []string) ([]string, bool) {
	if len(args) < 2 || args[0] != "git" {
		return nil, false
	}
	var out []string
	rest := args[1:]
	if len(rest) >= 2 && rest[0] == "--shallow-file" && rest[1] == "" {
		out = append(out, rest[0], rest[1])
		rest = rest[2:]
	}
	if len(rest) == 0 || rest[0] != "pack-objects" {
		return nil, false
	}
	out = append(out, "pack-objects")
	stdout := false
	for _, a := range rest[1:] {
		if !knownFlags[a] {
			return nil, false
		}
		stdout = stdout || a == "--stdout"
		if a != "--progress" {
			out = append(out, a)
		}
	}
	return out, stdout
}

// key is the hash of everything a pack depends on, each part framed by
// its length so no two requests share one. No token or identity is in it:
// the stdin is what upload-pack derived after the scope filter. Its first
// part names the hook's namespace: no key of Share is ever one of these.
func key(project string, version int, args []string, stdin []byte) string {
	parts := [][]byte{[]byte(hookNamespace), []byte(project), []byte(fmt.Sprint(version))}
	for _, a := range args {
		parts = append(parts, []byte(a))
	}
	return hashParts(append(parts, nil, stdin))
}

// The namespaces of the keys: the first part of every key hashed.
const (
	hookNamespace  = "pack-objects"
	shareNamespace = "shared"
)

// hashParts hashes parts, each framed by its length: the framing is
// prefix-free, so two lists of parts never share a hash input.
func hashParts(parts [][]byte) string {
	h := sha256.New()
	for _, b := range parts {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// entry is one generation: a file written by pack-objects and read by
// every request of its key, from offset 0, following the writer.
type entry struct {
	key     string
	path    string
	created time.Time

	// readers is how many Readers have it open (under Cache.mu); cancel
	// ends its generation, when the last goes before it is done.
	readers int
	cancel  context.CancelFunc

	mu      sync.Mutex
	size    int64
	done    bool
	err     error
	changed chan struct{} // closed and replaced at each write and at the end
}

func (e *entry) state() (size int64, done bool, err error, changed <-chan struct{}) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.size, e.done, e.err, e.changed
}

// Write appends to the entry's count (the generation writes the file) and
// wakes its readers.
func (e *entry) grew(n int) {
	e.mu.Lock()
	e.size += int64(n)
	close(e.changed)
	e.changed = make(chan struct{})
	e.mu.Unlock()
}

func (e *entry) finish(err error) {
	e.mu.Lock()
	e.done, e.err = true, err
	close(e.changed)
	e.mu.Unlock()
}

// Generate writes one entry's content to w. It runs on the cache's
// context (ended at Close), not on a request's: every reader of the key
// needs it whole. An error drops the entry: its readers get the error,
// and no later request is served from it.
type Generate func(ctx context.Context, w io.Writer) error

// open answers the entry of key k and an open file on it, starting a
// generation (gen) when there is none to share; hit says which. The file
// is opened under the lock, so eviction cannot remove it first (once
// open, it is read whole even if it is removed).
func (c *Cache) open(k string, gen Generate) (e *entry, f *os.File, hit bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e = c.entries[k]; e != nil {
		// A generation still running is shared whatever its age: its
		// file is not removed under its writer.
		if _, done, _, _ := e.state(); !done || time.Since(e.created) < c.cfg.MaxAge {
			if f, err = os.Open(e.path); err == nil {
				e.readers++
				return e, f, true, nil
			}
		}
		c.dropLocked(e)
	}
	c.seq++
	e = &entry{key: k, path: filepath.Join(c.dir, fmt.Sprintf("%s-%d.entry", k[:32], c.seq)),
		created: time.Now(), changed: make(chan struct{})}
	w, err := os.OpenFile(e.path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, nil, false, err
	}
	if f, err = os.Open(e.path); err != nil {
		w.Close()
		os.Remove(e.path)
		return nil, nil, false, err
	}
	c.entries[k] = e
	e.readers = 1
	ctx, cancel := context.WithCancel(c.ctx)
	e.cancel = cancel
	c.wg.Add(1)
	go c.generate(ctx, e, w, gen)
	return e, f, false, nil
}

// left is a reader gone: the last one to leave an entry still generated
// ends its generation (no one is left to read it) and drops it.
func (c *Cache) left(e *entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e.readers--
	// Only a generation that has written nothing yet (waiting for its
	// turn, or git not yet answering) is ended: a client may go as soon
	// as it has its whole answer, before git exits.
	if size, done, _, _ := e.state(); e.readers == 0 && !done && size == 0 {
		e.cancel()
		c.dropLocked(e)
	}
}

// dropLocked takes an entry out of the index and removes its file (open
// readers keep reading it).
func (c *Cache) dropLocked(e *entry) {
	if c.entries[e.key] == e {
		delete(c.entries, e.key)
	}
	size, _, _, _ := e.state()
	if err := os.Remove(e.path); err == nil || errors.Is(err, os.ErrNotExist) {
		c.total -= size
		c.metrics.bytes.Set(float64(c.total))
	}
}

// entryWriter counts what the generation writes.
type entryWriter struct {
	c *Cache
	e *entry
	f *os.File
}

func (w entryWriter) Write(b []byte) (int, error) {
	n, err := w.f.Write(b)
	if n > 0 {
		w.c.mu.Lock()
		w.c.total += int64(n)
		w.c.metrics.bytes.Set(float64(w.c.total))
		w.c.mu.Unlock()
		w.e.grew(n)
	}
	return n, err
}

// generate runs gen into the entry, on the cache's context: every reader
// of the key needs it whole, whichever request started it.
func (c *Cache) generate(ctx context.Context, e *entry, w *os.File, gen Generate) {
	defer c.wg.Done()
	defer e.cancel()
	err := gen(ctx, entryWriter{c: c, e: e, f: w})
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		c.mu.Lock()
		c.dropLocked(e)
		c.mu.Unlock()
	}
	e.finish(err)
	c.evict()
}

// packObjects is the generation of a hook's request: pack-objects on the
// ticket's repository, its arguments and stdin as upload-pack gave them.
func (c *Cache) packObjects(tk ticket, args []string, stdin []byte) Generate {
	return func(ctx context.Context, w io.Writer) error {
		cmd := c.cfg.Git.CommandWith(ctx, gitexec.Options{GitDir: tk.repoPath}, args...)
		cmd.Stdin = bytes.NewReader(stdin)
		cmd.Stdout = w
		var stderr tail
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			err = fmt.Errorf("git pack-objects: %w: %s", err, strings.TrimSpace(stderr.String()))
			c.logger.Warn("pack cache: generating a pack", "project", tk.project, "err", err)
			return err
		}
		return nil
	}
}

// tail keeps the last KiB a process wrote, for the log.
type tail struct{ b []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > 1024 {
		t.b = t.b[len(t.b)-1024:]
	}
	return len(p), nil
}

func (t *tail) String() string { return string(t.b) }

// evict removes the entries older than MaxAge, then the oldest finished
// ones while the total passes MaxBytes. A generation still running is
// never removed.
func (c *Cache) evict() {
	c.mu.Lock()
	defer c.mu.Unlock()
	var finished []*entry
	for _, e := range c.entries {
		_, done, _, _ := e.state()
		if !done {
			continue
		}
		if time.Since(e.created) >= c.cfg.MaxAge {
			c.dropLocked(e)
			continue
		}
		finished = append(finished, e)
	}
	for c.total > c.cfg.MaxBytes && len(finished) > 0 {
		oldest := 0
		for i, e := range finished {
			if e.created.Before(finished[oldest].created) {
				oldest = i
			}
		}
		c.dropLocked(finished[oldest])
		finished = append(finished[:oldest], finished[oldest+1:]...)
	}
}

// janitor evicts by age even when no generation ends.
func (c *Cache) janitor() {
	defer c.wg.Done()
	every := min(c.cfg.MaxAge/2, time.Minute)
	t := time.NewTicker(max(every, 10*time.Millisecond))
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
			c.evict()
		}
	}
}

// metrics are the cache's Prometheus metrics.
type metrics struct {
	requests *prometheus.CounterVec
	bytes    prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "refkeeper_pack_cache_requests_total",
			Help: "Packs and fetch answers asked of the pack cache: hit (an entry shared, also while it was generated), miss (a generation started), bypass (cache off, disk below its floor, or a request it does not serve).",
		}, []string{"result"}),
		bytes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "refkeeper_pack_cache_bytes", Help: "Bytes of the pack cache's entries on disk.",
		}),
	}
	for _, r := range []string{"hit", "miss", "bypass"} {
		m.requests.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.requests, m.bytes)
	}
	return m
}

func (m *metrics) result(r string) { m.requests.WithLabelValues(r).Inc() }

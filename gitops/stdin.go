package gitops

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// refWriter is one long-lived `git update-ref --stdin` process that runs
// transaction after transaction (start, updates, prepare, commit). Creating
// a process costs milliseconds; a transaction in a running one costs about
// its lock files. git exits when a transaction fails, and the next call
// starts a new process. Only the create drainer of a repository uses it, so
// it needs no lock of its own.
type refWriter struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	out    *bufio.Reader
	stderr *lockedBuffer
	used   time.Time
	closed bool
}

// writerIdle is how long an unused writer process is kept.
const writerIdle = 10 * time.Second

func (r *Repo) startWriter(refLockTimeout time.Duration) (*refWriter, error) {
	cmd := exec.Command(r.root.git(), r.updateRefArgs(refLockTimeout)...)
	cmd.Env = append(os.Environ(), "GIT_TERMINAL_PROMPT=0", "LC_ALL=C")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := &lockedBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, &CommandError{Args: []string{"update-ref", "--stdin"}, Err: err}
	}
	return &refWriter{cmd: cmd, stdin: stdin, out: bufio.NewReader(stdout), stderr: stderr, used: time.Now()}, nil
}

// transact runs one transaction; on any failure the process is gone and
// the error is a *CommandError with git's message.
func (w *refWriter) transact(updates []Update) error {
	// One write for the whole transaction: git answers all three steps.
	return w.run(transactionText(updates, "prepare\ncommit\n"), "start: ok", "prepare: ok", "commit: ok")
}

// prepare starts a transaction and takes the lock of every ref in it: until
// commit or abort, no other writer can change them. On failure the process
// is gone.
func (w *refWriter) prepare(updates []Update) error {
	return w.run(transactionText(updates, "prepare\n"), "start: ok", "prepare: ok")
}

// commit applies the prepared transaction and releases its locks.
func (w *refWriter) commit() error { return w.run([]byte("commit\n"), "commit: ok") }

// abort drops the prepared transaction, refs unchanged, and releases its
// locks; the process stays for the next transaction.
func (w *refWriter) abort() error { return w.run([]byte("abort\n"), "abort: ok") }

func transactionText(updates []Update, tail string) []byte {
	var in bytes.Buffer
	in.WriteString("start\n")
	for _, u := range updates {
		fmt.Fprintf(&in, "update %s %s %s\n", u.Ref, u.New, u.Old)
	}
	in.WriteString(tail)
	return in.Bytes()
}

// run writes commands and reads git's answers, which must be want, in order.
func (w *refWriter) run(commands []byte, want ...string) error {
	w.used = time.Now()
	// A hung git (a stalled file system) must not hold every create of the
	// repository: past gitTimeout the process is ended and the read fails.
	watchdog := time.AfterFunc(gitTimeout, func() { _ = w.cmd.Process.Signal(syscall.SIGTERM) })
	defer watchdog.Stop()
	// A failing prepare makes git exit: the write may then fail too, but the
	// answer is read from git's output either way.
	_, _ = w.stdin.Write(commands)
	for _, answer := range want {
		line, err := w.out.ReadString('\n')
		if err != nil || strings.TrimSpace(line) != answer {
			w.close()
			return &CommandError{Args: []string{"update-ref", "--stdin"}, Stderr: strings.TrimSpace(w.stderr.String()),
				Err: fmt.Errorf("transaction failed at %q", answer)}
		}
	}
	return nil
}

// close ends the process: SIGTERM after closing its input, so it removes
// any lock it holds.
func (w *refWriter) close() {
	if w.closed {
		return
	}
	w.closed = true
	_ = w.stdin.Close()
	done := make(chan struct{})
	go func() { _ = w.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(time.Second):
		_ = w.cmd.Process.Signal(syscall.SIGTERM)
		<-done
	}
}

// lockedBuffer collects a process's stderr while it runs.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

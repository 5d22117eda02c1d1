package testdata

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// readyTimeout bounds how long a fresh redis-server may take to answer.
	readyTimeout = 10 * time.Second
	// stopTimeout is how long a SIGTERM gets before SIGKILL.
	stopTimeout = 10 * time.Second
	// startAttempts covers the window between picking a free port and
	// redis-server binding it, in which another process may take the port.
	startAttempts = 5
)

// Redis is a real redis-server process started for one test on a free port.
// Nothing is persisted: stopping the server loses its data.
type Redis struct {
	dir  string   // --dir and log file location, removed by tb.TempDir
	args []string // more redis-server arguments
	// sentinelOf, when set, makes this a redis-sentinel watching that
	// master (see StartSentinels) instead of a redis-server.
	sentinelOf *sentinelConfig

	mu     sync.Mutex
	port   int
	cmd    *exec.Cmd     // nil while stopped
	exited chan struct{} // closed once cmd has been waited for
}

// StartRedis starts redis-server on a free 127.0.0.1 port and waits until it
// answers. The server is stopped when the test ends.
func StartRedis(tb testing.TB) *Redis {
	tb.Helper()
	needProgram(tb, "redis-server", "redis-server")
	return startOnFreePort(tb, &Redis{dir: tb.TempDir()})
}

// StartRedisWith is StartRedis with more redis-server arguments (for
// example --requirepass).
func StartRedisWith(tb testing.TB, args ...string) *Redis {
	tb.Helper()
	return startOnFreePort(tb, &Redis{dir: tb.TempDir(), args: args})
}

// StartReplica starts a redis-server that replicates master and waits until
// it has master's data.
func StartReplica(tb testing.TB, master *Redis) *Redis {
	tb.Helper()
	host, port, _ := net.SplitHostPort(master.Addr())
	r := startOnFreePort(tb, &Redis{dir: tb.TempDir(), args: []string{"--replicaof", host, port}})
	r.WaitInSync(tb)
	return r
}

// needProgram fails the test when program is not on PATH, naming the
// Debian package that has it.
func needProgram(tb testing.TB, program, pkg string) {
	tb.Helper()
	if _, err := exec.LookPath(program); err != nil {
		tb.Fatalf("testdata: %s is not on PATH (install %s to run this test): %v", program, pkg, err)
	}
}

// startOnFreePort launches r on a free port, trying again when another
// process took the port first.
func startOnFreePort(tb testing.TB, r *Redis) *Redis {
	tb.Helper()
	return startOnPort(tb, r, r.program(), freePort, nil)
}

// startOnPort launches r on a port pick answers, trying again with another
// when the launch fails (another process may take the port between pick
// and the bind). portArgs, when set, answers the arguments that depend on
// the port; they replace those of the attempt before. what names the
// server in the failure.
func startOnPort(tb testing.TB, r *Redis, what string, pick func() (int, error), portArgs func(port int) []string) *Redis {
	tb.Helper()
	var errs []error
	for range startAttempts {
		port, err := pick()
		if err != nil {
			tb.Fatalf("testdata: find a free port: %v", err)
		}
		r.port = port
		if portArgs != nil {
			r.args = portArgs(port)
		}
		err = r.launch()
		if err == nil {
			// Registered after tb.TempDir, so it runs before the
			// directory is removed.
			tb.Cleanup(func() { r.Stop(tb) })
			return r
		}
		errs = append(errs, err)
	}
	tb.Fatalf("testdata: start %s (%d attempts): %v", what, startAttempts, errors.Join(errs...))
	return nil
}

// program is the executable r runs.
func (r *Redis) program() string {
	if r.sentinelOf != nil {
		return "redis-sentinel"
	}
	return "redis-server"
}

// WaitInSync waits until this replica's link to its master is up and it has
// loaded the master's data.
func (r *Redis) WaitInSync(tb testing.TB) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), DisableIdentity: true})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := c.Info(ctx, "replication").Result()
		cancel()
		if err == nil && strings.Contains(info, "master_link_status:up") && strings.Contains(info, "master_sync_in_progress:0") {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testdata: replica %s is not in sync after 30s: %v\n%s", r.Addr(), err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Kill ends the server with SIGKILL, as a crash would: nothing is saved,
// and replicas keep only what they had received.
func (r *Redis) Kill(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd == nil {
		return
	}
	cmd, exited := r.cmd, r.exited
	r.cmd, r.exited = nil, nil
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		tb.Fatalf("testdata: SIGKILL redis-server on port %d: %v", r.port, err)
	}
	<-exited
}

// SaveAndStop writes the server's data to its RDB file and stops it; Start
// loads that file again. A replica stopped so misses what its master is
// sent meanwhile.
func (r *Redis) SaveAndStop(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), DisableIdentity: true})
	defer c.Close()
	if err := c.Save(ctx).Err(); err != nil {
		tb.Fatalf("testdata: SAVE on %s: %v", r.Addr(), err)
	}
	r.Stop(tb)
}

// Addr is the server's host:port.
func (r *Redis) Addr() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
}

// URL is a redis:// URL for database 0.
func (r *Redis) URL() string {
	return "redis://" + r.Addr() + "/0"
}

// Client returns a new client for the server, closed when the test ends.
// It keeps working across Stop and Start because the port does not change.
func (r *Redis) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), DisableIdentity: true})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop stops the server; its data is lost. Stopping a stopped server does
// nothing.
func (r *Redis) Stop(tb testing.TB) {
	tb.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	killed, err := r.stopLocked()
	if err != nil {
		tb.Errorf("testdata: stop redis-server on port %d: %v", r.port, err)
	} else if killed {
		tb.Logf("testdata: redis-server on port %d ignored SIGTERM for %v; killed it", r.port, stopTimeout)
	}
}

// Start starts a stopped server again, empty, on the same port, so
// addresses and clients handed out earlier stay valid.
func (r *Redis) Start(tb testing.TB) {
	tb.Helper()
	if err := r.launch(); err != nil {
		tb.Fatalf("testdata: restart redis-server: %v", err)
	}
}

// FlushAll deletes every key in every database.
func (r *Redis) FlushAll(tb testing.TB) {
	tb.Helper()
	// Not tb.Context: it is already cancelled when cleanups run, and
	// flushing from a cleanup is a reasonable thing to do.
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: r.Addr(), DisableIdentity: true})
	defer c.Close()
	if err := c.FlushAll(ctx).Err(); err != nil {
		tb.Fatalf("testdata: FLUSHALL on %s: %v", r.Addr(), err)
	}
}

// launch starts redis-server on r.port and waits until it answers. On
// failure the process is gone and the error carries the server's log.
func (r *Redis) launch() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cmd != nil {
		return fmt.Errorf("redis-server on port %d is already running", r.port)
	}

	logPath := filepath.Join(r.dir, "redis.log")
	logFile, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	// Note where this run's output starts, so errors show only its lines.
	logStart, _ := logFile.Seek(0, io.SeekEnd)

	var cmd *exec.Cmd
	if r.sentinelOf != nil {
		conf, err := r.sentinelOf.write(r.dir, r.port)
		if err != nil {
			logFile.Close()
			return err
		}
		cmd = exec.Command("redis-sentinel", conf)
	} else {
		cmd = exec.Command("redis-server",
			"--port", strconv.Itoa(r.port),
			"--bind", "127.0.0.1",
			"--save", "",
			"--appendonly", "no",
			"--dir", r.dir,
			"--daemonize", "no",
		)
	}
	cmd.Args = append(cmd.Args, r.args...)
	cmd.Stdout = logFile
	cmd.Stderr = logFile
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return err
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(exited)
	}()
	r.cmd, r.exited = cmd, exited

	if err := r.waitReadyLocked(); err != nil {
		_, _ = r.stopLocked()
		return fmt.Errorf("port %d: %w\n%s output:\n%s", r.port, err, r.program(), readFrom(logPath, logStart))
	}
	return nil
}

// waitReadyLocked polls PING until the server answers, the process exits
// or the deadline passes. It then checks that the server answering is ours:
// if another process took the port first, ours exits while theirs answers.
func (r *Redis) waitReadyLocked() error {
	deadline := time.Now().Add(readyTimeout)
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port))
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := pingInfo(addr, r.requirePass(), deadline)
		if err == nil {
			if !strings.Contains(info, fmt.Sprintf("\nprocess_id:%d\r", r.cmd.Process.Pid)) {
				return fmt.Errorf("another redis-server answers on port %d", r.port)
			}
			return nil
		}
		select {
		case <-r.exited:
			return fmt.Errorf("%s exited before answering: %v", r.program(), r.cmd.ProcessState)
		case <-tick.C:
			if time.Now().After(deadline) {
				return fmt.Errorf("%s did not answer PING within %v: %v", r.program(), readyTimeout, err)
			}
		}
	}
}

// pingInfo sends PING and, once it gets PONG, returns the INFO server
// section. It speaks RESP over a plain connection rather than using a
// go-redis client, which would log every refused dial while the server is
// still starting.
func pingInfo(addr, password string, deadline time.Time) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	br := bufio.NewReader(conn)
	if password != "" {
		if _, err := fmt.Fprintf(conn, "*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n", len(password), password); err != nil {
			return "", err
		}
		if line, err := br.ReadString('\n'); err != nil || line != "+OK\r\n" {
			return "", fmt.Errorf("AUTH answered %q: %v", strings.TrimSpace(line), err)
		}
	}
	if _, err := io.WriteString(conn, "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"); err != nil {
		return "", err
	}
	line, err := br.ReadString('\n')
	if err != nil {
		return "", err
	}
	if line != "+PONG\r\n" {
		// For example -LOADING while a server reads its data.
		return "", fmt.Errorf("PING answered %q", strings.TrimSpace(line))
	}
	// INFO answers with a bulk string: $<length>\r\n<data>\r\n.
	line, err = br.ReadString('\n')
	if err != nil {
		return "", err
	}
	n, err := strconv.Atoi(strings.TrimSpace(strings.TrimPrefix(line, "$")))
	if !strings.HasPrefix(line, "$") || err != nil {
		return "", fmt.Errorf("INFO answered %q", strings.TrimSpace(line))
	}
	info := make([]byte, n)
	if _, err := io.ReadFull(br, info); err != nil {
		return "", err
	}
	return string(info), nil
}

// stopLocked sends SIGTERM, waits, and falls back to SIGKILL, which it
// reports as killed.
func (r *Redis) stopLocked() (killed bool, err error) {
	if r.cmd == nil {
		return false, nil
	}
	cmd, exited := r.cmd, r.exited
	r.cmd, r.exited = nil, nil

	// The process may already be gone; waiting on exited tells for sure.
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return false, nil
	case <-time.After(stopTimeout):
	}
	if err := cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return false, fmt.Errorf("SIGKILL: %w", err)
	}
	<-exited
	return true, nil
}

// requirePass is the password the server was started with (--requirepass),
// or "".
func (r *Redis) requirePass() string {
	for i, a := range r.args {
		if a == "--requirepass" && i+1 < len(r.args) {
			return r.args[i+1]
		}
	}
	return ""
}

// freePort asks the kernel for an unused port. It is released before
// redis-server binds it, hence the retries in StartRedis.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// readFrom returns the file's content from offset on, for error messages.
func readFrom(path string, offset int64) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(read %s: %v)", path, err)
	}
	if offset > int64(len(b)) {
		offset = 0
	}
	return string(b[offset:])
}

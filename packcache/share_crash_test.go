package packcache

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// crashChild is the environment variable that makes this test binary the
// process that is killed: it opens the cache on the directory it names,
// starts a shared generation that writes half an answer and hangs, and
// says "ready" once the half is on disk.
const crashChild = "PACKCACHE_CRASH_CHILD_DIR"

var crashKey = [][]byte{[]byte("githttp response v1"), []byte("group/app"), []byte("refs/pipelines/7")}

// TestCrashLeavesNoPartialEntry: a process killed with SIGKILL
// while it generated a shared answer leaves half an entry on disk; the
// next process on the same directory removes it and generates the key
// again: the half is never served.
func TestCrashLeavesNoPartialEntry(t *testing.T) {
	if dir := os.Getenv(crashChild); dir != "" {
		c, err := Open(Config{Dir: dir, Hook: []string{"unused"}})
		if err != nil {
			fmt.Println("open:", err)
			os.Exit(2)
		}
		r, _, ok := c.Share(context.Background(), crashKey, func(ctx context.Context, w io.Writer) error {
			io.WriteString(w, "Status: 200 OK\r\n\r\nhalf of an ans")
			<-ctx.Done()
			return ctx.Err()
		})
		if !ok {
			os.Exit(2)
		}
		b := make([]byte, 4)
		io.ReadFull(r, b)
		fmt.Println("ready")
		time.Sleep(time.Hour)
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashLeavesNoPartialEntry$")
	cmd.Env = append(os.Environ(), crashChild+"="+dir)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, _ := bufio.NewReader(out).ReadString('\n')
	if line != "ready\n" {
		cmd.Process.Kill()
		t.Fatalf("the child said %q", line)
	}
	entries, _ := filepath.Glob(filepath.Join(dir, "proc-*", "*.entry"))
	_ = syscall.Kill(cmd.Process.Pid, syscall.SIGKILL)
	_ = cmd.Wait()
	if len(entries) != 1 {
		t.Fatalf("the killed process left entries %v, want its one partial entry", entries)
	}
	c, err := Open(Config{Dir: dir, Hook: []string{"unused"}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := os.Stat(entries[0]); !os.IsNotExist(err) {
		t.Errorf("the killed process's partial entry %s is still there after the next Open: %v", entries[0], err)
	}
	r, hit, ok := c.Share(context.Background(), crashKey, func(ctx context.Context, w io.Writer) error {
		_, err := io.WriteString(w, "Status: 200 OK\r\n\r\nthe whole answer")
		return err
	})
	if !ok {
		t.Fatal("bypassed")
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if hit || err != nil || !strings.HasSuffix(string(b), "the whole answer") {
		t.Fatalf("after the crash: hit %v, %q, %v; want a new generation", hit, b, err)
	}
}

package testdata

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The refkeeper binary, built once per test binary for the tests that run
// the service as a process of its own (kill -9, replicas, a client meeting
// the real server).
var (
	binaryOnce sync.Once
	binaryPath string
	binaryErr  error
)

// RefkeeperBinary builds ./cmd/refkeeper once and answers its path.
func RefkeeperBinary(tb testing.TB) string {
	tb.Helper()
	binaryOnce.Do(func() {
		dir, err := os.MkdirTemp("", "refkeeper-bin-")
		if err != nil {
			binaryErr = err
			return
		}
		binaryPath = filepath.Join(dir, "refkeeper")
		out, err := exec.Command("go", "build", "-o", binaryPath, "github.com/refkeeper/refkeeper/cmd/refkeeper").CombinedOutput()
		if err != nil {
			binaryErr = &buildError{out: string(out), err: err}
		}
	})
	if binaryErr != nil {
		tb.Fatalf("building refkeeper: %v", binaryErr)
	}
	return binaryPath
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// LockedBuffer collects what concurrent writers (a process's output, a
// logger) write, while the test reads it.
type LockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *LockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

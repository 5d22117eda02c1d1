package testdata

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// The refkeeper binary, built at most once per test binary for the tests
// that run the service as a process of its own (kill -9, replicas, a client
// meeting the real server), into a directory Main removes at the end.
var (
	binaryMu      sync.Mutex
	binaryManaged bool // Main runs this test binary: it removes binaryDir
	binaryDir     string
	binaryPath    string
	binaryErr     error
)

// Main runs a package's tests and then removes the refkeeper binary that
// RefkeeperBinary built for them, so that a run leaves nothing of 25 MB
// behind in the temporary directory. Every package whose tests start the
// binary calls it from its TestMain:
//
//	func TestMain(m *testing.M) { testdata.Main(m) }
//
// A test binary that is killed (a -timeout panic) cannot clean up; it leaves
// one directory named refkeeper-bin-*.
func Main(m *testing.M) {
	binaryMu.Lock()
	binaryManaged = true
	binaryMu.Unlock()
	code := m.Run()
	binaryMu.Lock()
	dir := binaryDir
	binaryMu.Unlock()
	if dir != "" {
		if err := os.RemoveAll(dir); err != nil {
			fmt.Fprintf(os.Stderr, "testdata: removing the refkeeper binary: %v\n", err)
		}
	}
	os.Exit(code)
}

// RefkeeperBinary builds ./cmd/refkeeper once per test binary and answers
// its path. The package's TestMain must run Main, which removes it again.
func RefkeeperBinary(tb testing.TB) string {
	tb.Helper()
	binaryMu.Lock()
	defer binaryMu.Unlock()
	if !binaryManaged {
		tb.Fatal("testdata: RefkeeperBinary needs func TestMain(m *testing.M) { testdata.Main(m) } in the test package, which removes the binary afterwards")
	}
	if binaryPath == "" && binaryErr == nil {
		binaryDir, binaryErr = os.MkdirTemp("", "refkeeper-bin-")
		if binaryErr == nil {
			path := filepath.Join(binaryDir, "refkeeper")
			out, err := exec.Command("go", "build", "-o", path, "github.com/refkeeper/refkeeper/cmd/refkeeper").CombinedOutput()
			if err != nil {
				binaryErr = &buildError{out: string(out), err: err}
			} else {
				binaryPath = path
			}
		}
	}
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

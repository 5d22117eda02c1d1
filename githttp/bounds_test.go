package githttp

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// A fetch without side-band makes pack-objects print its progress on
// stderr, hundreds of writes: a client must not turn that into as many
// log lines. It is kept bounded and logged only when git fails.
func TestGitStderrDoesNotFloodTheLog(t *testing.T) {
	var logs testdata.LockedBuffer
	f := newFixture(t, "", func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	files := map[string]string{}
	for i := range 3000 {
		files[fmt.Sprintf("d%d/f%d.txt", i%50, i)] = fmt.Sprintf("file %d\n", i)
	}
	sha := f.git.Commit(t, "many", files, "many files")
	body := fmt.Sprintf("%04xwant %s\n0000%04xdone\n", 4+len("want ")+40+1, sha, 4+len("done\n"))
	r, _ := http.NewRequest("POST", f.base+"/git/group/app.git/git-upload-pack", strings.NewReader(body))
	r.SetBasicAuth("x", apiToken)
	r.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n == 0 {
		t.Fatalf("fetch: %d, %d bytes", resp.StatusCode, n)
	}
	if lines := strings.Count(logs.String(), "\n"); lines > 0 {
		t.Errorf("one successful fetch wrote %d log lines, the first: %.200s", lines, logs.String())
	}
}

// A client that asks for a pack and never reads it must not keep its
// --max-git-http turn for as long as it keeps the connection open: a write
// that makes no progress fails after the stall, and the whole answer ends
// within the git timeout, whichever comes first; the turn goes with it.
func TestClientThatStopsReadingGivesBackItsTurn(t *testing.T) {
	for _, c := range []struct {
		name    string
		timeout time.Duration
		stall   time.Duration
	}{
		{"write stalled", 10 * time.Minute, time.Second},
		{"answer past the git timeout", 4 * time.Second, 10 * time.Minute},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFixture(t, "", func(cfg *Config) {
				cfg.MaxBackends = 1
				cfg.QueueWait = time.Second
				cfg.Timeout = c.timeout
			})
			f.server.writeStall = c.stall
			big := make([]byte, 16<<20) // incompressible: more than the sockets hold
			rand.Read(big)
			sha := f.git.Commit(t, "big", map[string]string{"big.bin": string(big)}, "big")

			host := strings.TrimPrefix(f.base, "http://")
			conn, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.(*net.TCPConn).SetReadBuffer(4096)
			body := fmt.Sprintf("%04xwant %s\n0000%04xdone\n", 4+len("want ")+40+1, sha, 4+len("done\n"))
			req := "POST /git/group/app.git/git-upload-pack HTTP/1.1\r\nHost: " + host +
				"\r\nAuthorization: Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+apiToken)) +
				"\r\nContent-Type: application/x-git-upload-pack-request\r\nContent-Length: " +
				fmt.Sprint(len(body)) + "\r\n\r\n" + body
			if _, err := conn.Write([]byte(req)); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReaderSize(conn, 64).ReadString('\n')
			if !strings.Contains(line, " 200 ") {
				t.Fatalf("status line %q", line)
			}
			// Never read again; the connection stays open.
			for wait := time.Now(); f.server.backends.InUse() != 0; time.Sleep(100 * time.Millisecond) {
				if time.Since(wait) > 90*time.Second {
					t.Fatalf("the turn is still held %s after the client stopped reading (stall %s, git timeout %s)",
						time.Since(wait).Round(time.Second), c.stall, c.timeout)
				}
			}
			r, _ := http.NewRequest("GET", f.base+"/git/group/app.git/info/refs?service=git-upload-pack", nil)
			r.SetBasicAuth("x", apiToken)
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("the next fetch: %d, want 200", resp.StatusCode)
			}
		})
	}
}

// Negotiations are read whole before a turn is taken: small gzip bodies
// that inflate to the largest a request may send, many at once while every
// turn is busy, must not hold memory beyond the bodies' budget. Those that
// find none are answered 503 within the queue wait.
func TestQueuedGzipBodiesHoldBoundedMemory(t *testing.T) {
	f := newFixture(t, "", func(c *Config) {
		c.MaxBackends = 1
		c.QueueWait = 5 * time.Second
	})
	release, err := f.server.backends.Acquire(t.Context()) // every turn busy
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	var zbuf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&zbuf, gzip.BestCompression)
	zw.Write(make([]byte, maxRequestBody))
	zw.Close()
	bomb := zbuf.Bytes()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	const n = 48
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		wg.Go(func() {
			r, _ := http.NewRequest("POST", f.base+"/git/group/app.git/git-upload-pack", bytes.NewReader(bomb))
			r.SetBasicAuth("x", apiToken)
			r.Header.Set("Content-Type", "application/x-git-upload-pack-request")
			r.Header.Set("Content-Encoding", "gzip")
			resp, err := http.DefaultClient.Do(r)
			if err != nil {
				codes <- -1
				return
			}
			resp.Body.Close()
			codes <- resp.StatusCode
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	var peak uint64
	for waiting := true; waiting; {
		select {
		case <-done:
			waiting = false
		case <-time.After(50 * time.Millisecond):
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapInuse)
	}
	t.Logf("heap in use: %d MiB before, up to %d MiB while %d requests of %d KiB waited", before.HeapInuse>>20, peak>>20, n, len(bomb)>>10)
	close(codes)
	for c := range codes {
		if c != http.StatusServiceUnavailable {
			t.Errorf("a request queued behind a busy turn: %d, want 503", c)
		}
	}
	if grew := int64(peak) - int64(before.HeapInuse); grew > 256<<20 {
		t.Errorf("%d requests of %d KiB on the wire held up to %d MiB of server memory while queued for a turn (budget %d MiB)",
			n, len(bomb)>>10, grew>>20, DefaultBodyBudget>>20)
	}
}

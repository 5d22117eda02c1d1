package githttp

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refkeeper/refkeeper/packcache"
	"github.com/refkeeper/refkeeper/pktline"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/refs/refstest"
	"github.com/refkeeper/refkeeper/testdata"
)

// markingGit is a git whose every `git http-backend` run writes "start"
// to the file it answers, sleeps pause, runs the real git and writes
// "end" once git ended by itself: a run stopped (SIGTERM to its group)
// never writes "end".
func markingGit(t *testing.T, pause string) (gitBinary, runs string) {
	t.Helper()
	dir := t.TempDir()
	runs = filepath.Join(dir, "runs")
	return wrapperGit(t, dir, func(real string) string {
		return "#!/bin/sh\ncase \" $* \" in *\" http-backend \"*) echo start >> " + runs + "; sleep " + pause + "; " + real + " \"$@\"; rc=$?; echo end >> " + runs + "; exit $rc;; esac\nexec " + real + " \"$@\"\n"
	}), runs
}

func countMarks(t *testing.T, runs string) (starts, ends int) {
	t.Helper()
	log := runLog(t, runs)
	return strings.Count(log, "start"), strings.Count(log, "end")
}

// v2FetchWithAgent is a scoped-valid v2 fetch of sha whose agent
// capability (kept by the filter) makes it a key of its own, with the
// want repeated wants times (the filter keeps every copy).
func v2FetchWithAgent(agent, sha string, wants int) []byte {
	lines := []pktline.Packet{pktline.Line("command=fetch"), pktline.Line("agent=" + agent), pktline.Line("object-format=sha1"),
		{Kind: pktline.Delim}, pktline.Line("ofs-delta"), pktline.Line("no-progress")}
	for range wants {
		lines = append(lines, pktline.Line("want "+sha))
	}
	lines = append(lines, pktline.Line("deepen 1"), pktline.Line("done"), pktline.Packet{Kind: pktline.Flush})
	b, err := pktline.Encode(lines)
	if err != nil {
		panic(err)
	}
	return b
}

// abandon sends one scoped v2 post and goes away as soon as the cache
// counted it (its generation started or queued): the client holds
// nothing any more.
func abandon(t *testing.T, reg *prometheus.Registry, bare, token string, body []byte, gz bool, misses float64) {
	t.Helper()
	if gz {
		var z bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
		zw.Write(body)
		zw.Close()
		body = z.Bytes()
	}
	leave := leavingFetch(bare, token, body, gz)
	for deadline := time.Now().Add(time.Minute); cacheResults(t, reg)["miss"] < misses; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			leave()
			t.Fatalf("request %v never reached the cache", misses)
		}
	}
	leave()
}

// TestAbandonedGenerationsGiveBackTheirTurns: a fetch token sends k
// scoped fetches that differ only in their agent string, and goes away
// from each as soon as it reached the cache. Without the cache a client
// that goes away ends its git (and its wait for a turn); with it, a
// generation whose every reader left before git wrote a byte ends too,
// so one token cannot hold the service's --max-git-http turns with no
// connection open (before, every abandoned generation waited for a turn
// and ran git to the end).
func TestAbandonedGenerationsGiveBackTheirTurns(t *testing.T) {
	for _, cached := range []bool{false, true} {
		t.Run(fmt.Sprintf("cache %v", cached), func(t *testing.T) {
			reg := prometheus.NewRegistry()
			gitBinary, runs := markingGit(t, "2")
			configure := []func(*Config){func(c *Config) { c.MaxBackends = 1; c.QueueWait = time.Minute }}
			if cached {
				configure = append(configure, withCache(openCache(t, reg)))
			}
			f := newFixture(t, gitBinary, configure...)
			url := f.pinURL(t, 7, f.git.Second)
			token, bare := tokenOf(url)
			const k = 4
			for i := range k {
				body := v2FetchWithAgent(fmt.Sprintf("attacker/%d", i), f.git.Second, 1)
				if cached {
					abandon(t, reg, bare, token, body, false, float64(i+1))
					continue
				}
				// Without the cache: gone once its git started or it waits
				// for the turn.
				leave := leavingFetch(bare, token, body, false)
				for f.server.backends.InUse()+f.server.backends.Waiting() == 0 {
					time.Sleep(10 * time.Millisecond)
				}
				leave()
			}
			// Every client is gone. Wait until the server is idle: no turn
			// held or waited for.
			start := time.Now()
			busy := func() bool { return f.server.backends.InUse()+f.server.backends.Waiting() != 0 }
			for busy() || func() bool { time.Sleep(300 * time.Millisecond); return busy() }() {
				if time.Since(start) > 3*time.Minute {
					t.Fatal("the server never became idle")
				}
				time.Sleep(50 * time.Millisecond)
			}
			starts, ends := countMarks(t, runs)
			t.Logf("%d clients that went away: %d http-backends started, %d ran to the end; the one turn was busy %s after the last client left",
				k, starts, ends, time.Since(start).Round(100*time.Millisecond))
			if ends > 1 {
				t.Errorf("%d abandoned fetches ran git to the end, one --max-git-http turn after the other, with no client left to read them", ends)
			}
		})
	}
}

// TestAbandonedGenerationsFreeTheirBodies: the body budget bounds
// the negotiations held at once, and a shared generation holds its
// request's body (inflated from a few KiB of gzip, up to 32 MiB of
// repeated wants, which the filter keeps) after that request gave its
// share back. k such requests, every turn busy, their clients gone: their
// generations end with their last reader and free the bodies (before,
// they held k bodies while waiting for a turn).
func TestAbandonedGenerationsFreeTheirBodies(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := openCache(t, reg)
	const budget = 8 << 20
	f := newFixture(t, "", withCache(c), func(cfg *Config) {
		cfg.MaxBackends = 1
		cfg.QueueWait = 10 * time.Minute
		cfg.BodyBudget = budget
	})
	release, err := f.server.backends.Acquire(t.Context()) // every turn busy
	if err != nil {
		t.Fatal(err)
	}
	// The queued generations end with the cache, before the turn is free.
	t.Cleanup(func() { c.Close(); release() })
	url := f.pinURL(t, 7, f.git.Second)
	token, bare := tokenOf(url)
	const k = 8
	const wants = 140000 // 7 MiB filtered
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	for i := range k {
		abandon(t, reg, bare, token, v2FetchWithAgent(fmt.Sprintf("attacker/%d", i), f.git.Second, wants), true, float64(i+1))
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	grew := int64(after.HeapInuse) - int64(before.HeapInuse)
	f.server.bodies.mu.Lock()
	free := f.server.bodies.free
	f.server.bodies.mu.Unlock()
	t.Logf("%d abandoned requests of %d KiB of filtered body each: heap in use grew %d MiB, body budget %d MiB, %d MiB of it free",
		k, len(v2FetchWithAgent("attacker/0", f.git.Second, wants))>>10, grew>>20, budget>>20, free>>20)
	if grew > 2*budget {
		t.Errorf("with every client gone and the body budget free, the server holds %d MiB for their generations (budget %d MiB)", grew>>20, budget>>20)
	}
}

// TestStalledReaderOfASharedAnswerIsCut: a runner that stops reading a
// shared answer (a hit sent with sendfile from a finished entry, or one
// streamed while it is generated) is cut after the write stall, as one
// served by its own git is: its connection, file and goroutine do not
// stay for as long as it keeps the connection open.
func TestStalledReaderOfASharedAnswerIsCut(t *testing.T) {
	for _, warm := range []bool{true, false} {
		t.Run(fmt.Sprintf("entry finished %v", warm), func(t *testing.T) {
			var logs testdata.LockedBuffer
			reg := prometheus.NewRegistry()
			f := newFixture(t, "", withCache(openCache(t, reg)), func(c *Config) {
				c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
				c.Timeout = 10 * time.Minute
			})
			f.server.writeStall = time.Second
			big := make([]byte, 16<<20) // incompressible: more than the sockets hold
			rand.Read(big)
			sha := f.git.Commit(t, "big", map[string]string{"big.bin": string(big)}, "big")
			url := f.pinURL(t, 7, sha)
			token, bare := tokenOf(url)
			body := v2FetchWithAgent("runner", sha, 1)
			if warm {
				if status, raw := postRaw(t, bare, token, true, body); status != http.StatusOK || len(raw) < 16<<20 {
					t.Fatalf("warming: %d, %d bytes", status, len(raw))
				}
			}
			host := strings.TrimPrefix(f.base, "http://")
			conn, err := net.Dial("tcp", host)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.(*net.TCPConn).SetReadBuffer(4096)
			req := "POST /git/group/app.git/git-upload-pack HTTP/1.1\r\nHost: " + host +
				"\r\nAuthorization: Basic " + base64.StdEncoding.EncodeToString([]byte("x:"+token)) +
				"\r\nContent-Type: application/x-git-upload-pack-request\r\nGit-Protocol: version=2\r\nContent-Length: " +
				fmt.Sprint(len(body)) + "\r\n\r\n" + string(body)
			if _, err := conn.Write([]byte(req)); err != nil {
				t.Fatal(err)
			}
			line, _ := bufio.NewReaderSize(conn, 64).ReadString('\n')
			if !strings.Contains(line, " 200 ") {
				t.Fatalf("status line %q", line)
			}
			// Never read again; the connection stays open.
			for wait := time.Now(); !strings.Contains(logs.String(), "serving git from the cache"); time.Sleep(100 * time.Millisecond) {
				if time.Since(wait) > 2*time.Minute {
					t.Fatalf("the shared answer is still being written %s after its client stopped reading (stall 1s); cache %v",
						time.Since(wait).Round(time.Second), cacheResults(t, reg))
				}
			}
			t.Logf("cache %v; log: %s", cacheResults(t, reg), strings.TrimSpace(logs.String()))
		})
	}
}

// jobCredentials answers a Credentials that reads "job-<id>" as the ID
// token of a job of pipeline id of group/app, apiToken as an API token,
// anything else as a fetch token.
func jobCredentials(c *Config) {
	c.Credentials = func(r *http.Request) (Caller, error) {
		_, password, _ := r.BasicAuth()
		if id, ok := strings.CutPrefix(password, "job-"); ok {
			n, _ := strconv.ParseInt(id, 10, 64)
			return Caller{Job: &JobScope{Project: "group/app", Pipeline: refs.PipelineID(n)}}, nil
		}
		if password == apiToken {
			return Caller{MayFetch: func(refs.Project) bool { return true }}, nil
		}
		return Caller{Token: password}, nil
	}
}

// variant is one way to send a request: its method, endpoint, headers
// (set as written, not canonicalized), body and gzip.
type variant struct {
	name    string
	post    bool
	headers map[string]string
	body    []byte
	gz      bool
}

// send sends v with token to the server at base and answers the status
// and what a client would tell of the answer: its bytes for an
// advertisement; for a post its first pkt-line, its non-pack lines and
// the objects of its pack.
func send(t *testing.T, base, token string, v variant) (int, string) {
	t.Helper()
	method, path := "GET", "/info/refs?service=git-upload-pack"
	body := v.body
	if v.post {
		method, path = "POST", "/git-upload-pack"
		if v.gz {
			var z bytes.Buffer
			zw := gzip.NewWriter(&z)
			zw.Write(body)
			zw.Close()
			body = z.Bytes()
		}
	}
	req, _ := http.NewRequest(method, base+"/git/group/app.git"+path, bytes.NewReader(body))
	if !v.post {
		req.Body, req.ContentLength = nil, 0
	}
	req.SetBasicAuth("x", token)
	for k, val := range v.headers {
		req.Header[k] = []string{val}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, ""
	}
	if !v.post {
		return resp.StatusCode, resp.Header.Get("Content-Type") + "\n" + string(raw)
	}
	pack, lines := sideBand(raw)
	out := resp.Header.Get("Content-Type") + "\n" + strings.Join(lines, "\n")
	if len(pack) > 0 {
		oids, err := packObjectIDs(t, pack)
		if err != nil {
			return resp.StatusCode, out + "\nbroken pack: " + err.Error()
		}
		out += "\nobjects " + strings.Join(oids, " ")
	}
	return resp.StatusCode, out
}

// TestSharedAnswersMatchUncachedAcrossIncarnationsAndShapes: a server with the
// response cache answers every request as one without it does, over
// requests that differ only in their headers (Git-Protocol spelled and
// valued oddly, Content-Type, gzip, Accept) sent in every order, with
// the fetch tokens of a pin, of its earlier incarnation at another SHA
// (whose answers were cached first), a job's ID token and an API token.
func TestSharedAnswersMatchUncachedAcrossIncarnationsAndShapes(t *testing.T) {
	pins := refstest.New(t)
	reg := prometheus.NewRegistry()
	plain := newFixtureOver(t, pins, "", jobCredentials)
	cached := newFixtureOver(t, pins, "", jobCredentials, withCache(openCache(t, reg)))
	g := plain.git
	variants := func(sha string) []variant {
		v2 := uploadPackRequest(true, []string{sha}, nil, nil, 1)
		v0 := uploadPackRequest(false, []string{sha}, nil, nil, 1)
		ct := "application/x-git-upload-pack-request"
		return []variant{
			{"v0 advertisement", false, nil, nil, false},
			{"v1 advertisement", false, map[string]string{"Git-Protocol": "version=1"}, nil, false},
			{"v2 advertisement", false, map[string]string{"Git-Protocol": "version=2"}, nil, false},
			{"Git_Protocol advertisement", false, map[string]string{"Git_Protocol": "version=2"}, nil, false},
			{"GIT_PROTOCOL advertisement", false, map[string]string{"GIT_PROTOCOL": "version=2"}, nil, false},
			{"lower-case version advertisement", false, map[string]string{"Git-Protocol": "Version=2"}, nil, false},
			{"advertisement with a content type", false, map[string]string{"Content-Type": ct}, nil, false},
			{"advertisement accepting anything", false, map[string]string{"Accept": "*/*"}, nil, false},
			{"v2 fetch", true, map[string]string{"Content-Type": ct, "Git-Protocol": "version=2"}, v2, false},
			{"v2 fetch, gzip", true, map[string]string{"Content-Type": ct, "Git-Protocol": "version=2", "Content-Encoding": "gzip"}, v2, true},
			{"v2 body as v0", true, map[string]string{"Content-Type": ct}, v2, false},
			{"v2 body, Git_Protocol", true, map[string]string{"Content-Type": ct, "Git_Protocol": "version=2"}, v2, false},
			{"v2 body, version=1:version=2", true, map[string]string{"Content-Type": ct, "Git-Protocol": "version=1:version=2"}, v2, false},
			{"v2 body, version=3", true, map[string]string{"Content-Type": ct, "Git-Protocol": "version=3"}, v2, false},
			{"v2 fetch, charset", true, map[string]string{"Content-Type": ct + "; charset=utf-8", "Git-Protocol": "version=2"}, v2, false},
			{"v2 fetch, no content type", true, map[string]string{"Git-Protocol": "version=2"}, v2, false},
			{"v2 fetch, accept", true, map[string]string{"Content-Type": ct, "Git-Protocol": "version=2", "Accept": "application/x-git-upload-pack-result"}, v2, false},
			{"v0 fetch", true, map[string]string{"Content-Type": ct}, v0, false},
			{"v1 fetch", true, map[string]string{"Content-Type": ct, "Git-Protocol": "version=1"}, v0, false},
			{"v0 body as v2", true, map[string]string{"Content-Type": ct, "Git-Protocol": "version=2"}, v0, false},
			{"v0 fetch, gzip", true, map[string]string{"Content-Type": ct, "Content-Encoding": "x-gzip"}, v0, true},
		}
	}
	// The first incarnation of pin 7, at First: its answers, and an API
	// token's, are cached in every shape.
	old, _ := tokenOf(plain.pinURL(t, 7, g.First))
	for _, v := range variants(g.First) {
		for _, token := range []string{apiToken, old, "job-7"} {
			send(t, cached.base, token, v)
		}
	}
	if err := pins.Service.Delete(context.Background(), "group/app", 7); err != nil {
		t.Fatal(err)
	}
	current, _ := tokenOf(plain.pinURL(t, 7, g.Merge))
	checked := 0
	for round := range 2 {
		for _, sha := range []string{g.First, g.Merge} {
			vs := variants(sha)
			if round == 1 {
				slices.Reverse(vs)
			}
			for _, v := range vs {
				for _, token := range []string{old, current, "job-7", "job-8", apiToken} {
					wantStatus, want := send(t, plain.base, token, v)
					gotStatus, got := send(t, cached.base, token, v)
					if gotStatus != wantStatus || got != want {
						t.Errorf("%s of %s with %.12s: with the cache %d\n%s\nwithout %d\n%s", v.name, sha[:7], token, gotStatus, got, wantStatus, want)
					}
					if token != apiToken && strings.Contains(got, g.First) && sha == g.First && gotStatus == http.StatusOK {
						t.Errorf("%s with %.12s received the earlier incarnation's commit", v.name, token)
					}
					checked++
				}
			}
		}
	}
	t.Logf("%d requests answered alike with and without the cache; cache %v", checked, cacheResults(t, reg))
}

// TestResponseCacheBoundsAndSecrets: below the disk floor a scoped fetch
// bypasses the shared answers (no entry made, git runs); many distinct
// keys of one token keep the cache's files within --pack-cache-max-bytes
// once their generations ended; no token reaches the log, the metrics or
// the cache's files.
func TestResponseCacheBoundsAndSecrets(t *testing.T) {
	var logs testdata.LockedBuffer
	reg := prometheus.NewRegistry()
	var below atomic.Bool
	exe, _ := os.Executable()
	dir := t.TempDir()
	const maxBytes = 64 << 10
	c, err := packcache.Open(packcache.Config{Dir: dir, Hook: []string{exe, packcache.HookCommand}, Registerer: reg,
		BelowFloor: below.Load, MaxBytes: maxBytes})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	gitBinary, runs := countingGit(t, "0")
	f := newFixture(t, gitBinary, withCache(c), jobCredentials, func(cfg *Config) {
		cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	files := map[string]string{}
	for i := range 200 {
		files[fmt.Sprintf("f%d.txt", i)] = fmt.Sprintf("file %d %x\n", i, make([]byte, 64))
	}
	sha := f.git.Commit(t, "some", files, "some files")
	url := f.pinURL(t, 7, sha)
	token, bare := tokenOf(url)

	below.Store(true)
	for range 2 {
		fetchPinV2(t, bare, token, v2FetchWithAgent("runner", sha, 1), sha)
	}
	entries := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "proc-*", "*.entry"))
		return len(m)
	}
	if posts, _ := backendRuns(t, runs); posts != 2 || entries() != 0 || cacheResults(t, reg)["bypass"] != 2 {
		t.Errorf("below the floor: %d http-backends for 2 fetches, %d entries, cache %v; want 2, none, 2 bypasses", posts, entries(), cacheResults(t, reg))
	}
	below.Store(false)

	biggest := 0.0
	for i := range 40 {
		for _, tk := range []string{token, "job-7"} {
			fetchPinV2(t, bare, tk, v2FetchWithAgent(fmt.Sprintf("runner/%d", i), sha, 1), sha)
			biggest = max(biggest, gauge(t, reg, "refkeeper_pack_cache_bytes"))
		}
	}
	t.Logf("40 distinct keys: at most %.0f bytes of entries kept (max %d), %d entry files now; cache %v", biggest, maxBytes, entries(), cacheResults(t, reg))
	if biggest > 2*maxBytes {
		t.Errorf("the cache held %.0f bytes, max %d", biggest, maxBytes)
	}
	// Failures that log: a generation refused by git, a stalled client.
	send(t, f.base, token, variant{"charset", true, map[string]string{"Content-Type": "text/plain", "Git-Protocol": "version=2"}, v2FetchWithAgent("x", sha, 1), false})

	var metrics bytes.Buffer
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		fmt.Fprintln(&metrics, mf.String())
	}
	var cached bytes.Buffer
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		cached.WriteString(p + "\n")
		if err == nil && !d.IsDir() {
			b, _ := os.ReadFile(p)
			cached.Write(b)
		}
		return nil
	})
	sig := token[strings.LastIndex(token, ".")+1:]
	for what, text := range map[string]string{"log": logs.String(), "metrics": metrics.String(), "cache files": cached.String()} {
		for _, secret := range []string{token, sig, "rkf1_", apiToken, "job-7"} {
			if strings.Contains(text, secret) {
				t.Errorf("the %s holds %q", what, secret)
			}
		}
	}
	t.Logf("log: %d bytes, metrics %d bytes, cache files %d bytes: no token", len(logs.String()), metrics.Len(), cached.Len())
}

// gauge reads a gauge of reg.
func gauge(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	return 0
}

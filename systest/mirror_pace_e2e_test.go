package systest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// pacedTries is how many tries a pace whose steps start at first and
// double allows within elapsed of the moment its first try could begin:
// that try, then one per step passed. The tests bound upstream requests by
// it, so a slow machine that outlasts a step is allowed the try the pace
// allows then, and never more.
func pacedTries(elapsed, first time.Duration) int {
	n, step, at := 1, first, first
	for at <= elapsed {
		n++
		step *= 2
		at += step
	}
	return n
}

// paceAnswer is a pin's answer: status, Retry-After (-1: none), the error
// code and message.
type paceAnswer struct {
	status     int
	retryAfter int
	code, msg  string
	sha        string
}

func (a paceAnswer) String() string {
	return fmt.Sprintf("%d Retry-After %d %s %q %s", a.status, a.retryAfter, a.code, a.msg, a.sha)
}

// pinSHA pins pipeline id of the mirror at api to sha on s.
func (s *server) pinSHA(tb testing.TB, api string, id int, sha string) paceAnswer {
	tb.Helper()
	code, h, raw := s.as(tb, testToken, "PUT", fmt.Sprintf("%s/pipelines/%d/ref", api, id), `{"sha": "`+sha+`"}`)
	a := paceAnswer{status: code, retryAfter: -1}
	if n, err := strconv.Atoi(h.Get("Retry-After")); err == nil {
		a.retryAfter = n
	}
	var body struct {
		SHA   string `json:"sha"`
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		tb.Fatalf("pin %d: %d with non-JSON body %q", id, code, raw)
	}
	a.code, a.msg, a.sha = body.Error.Code, body.Error.Message, body.SHA
	return a
}

// pinBurst pins, from three clients per replica at once, six pipelines
// each in a row (ids from first up, a hundred per replica) to the SHAs sha
// answers, and answers every pin's answer.
func pinBurst(t *testing.T, replicas []*server, api string, first int, sha func() string) []paceAnswer {
	const perReplica, inARow = 3, 6
	var mu sync.Mutex
	var burst []paceAnswer
	var wg sync.WaitGroup
	for ri, s := range replicas {
		for g := range perReplica {
			wg.Go(func() {
				for n := range inARow {
					ans := s.pinSHA(t, api, first+ri*100+g*10+n, sha())
					mu.Lock()
					burst = append(burst, ans)
					mu.Unlock()
				}
			})
		}
	}
	wg.Wait()
	return burst
}

// TestMirrorPacesAcrossReplicas runs two replicas of `serve --role all` on
// one repos root and one Redis, and counts what reaches the real upstream:
// a failed mirror's retry pace, kept in the mirror's record, holds for the
// pins of both replicas (one clone per step, the others answered the
// recorded failure with Retry-After); rewriting the credentials file with
// this mirror's entry as it was restarts it on neither, and fixing the
// entry lets the next pin on the other replica clone. A ready mirror whose
// credential the upstream stopped taking is asked at most once per
// refusal pace by each replica, while pins of SHAs it has go on.
func TestMirrorPacesAcrossReplicas(t *testing.T) {
	// The paces of a server as shipped (no flag sets them): a failed
	// mirror's retry step and a refused fetch's pace.
	const retryStep, refusedPace = 30 * time.Second, 5 * time.Second

	root := t.TempDir()
	u := testdata.StartUpstream(t)
	r := testdata.StartRedis(t)
	creds := filepath.Join(t.TempDir(), "credentials.json")
	// writeCreds writes the file by rename, with the mirror's entry "gh"
	// (password) and another credential "other" (otherPassword).
	writeCreds := func(password, otherPassword string) time.Time {
		t.Helper()
		var m map[string]map[string]any
		if err := json.Unmarshal(u.CredentialsJSON("gh", password), &m); err != nil {
			t.Fatal(err)
		}
		m["other"] = map[string]any{"username": "someone", "password": otherPassword, "hosts": []string{"other.example.com"}}
		body, _ := json.Marshal(m)
		tmp := creds + ".tmp"
		if err := os.WriteFile(tmp, body, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, creds); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(creds)
		if err != nil {
			t.Fatal(err)
		}
		return st.ModTime()
	}
	failedAt := writeCreds("wrong-password", "other-0")
	args := []string{"--role", "all", "--repos", root, "--redis", r.URL(), "--credentials", creds,
		"--upstream-allow", testdata.LoopbackUpstreams, "--upstream-timeout", "30s"}
	a, b := startServer(t, args...), startServer(t, args...)
	replicas := []*server{a, b}
	const api = "/api/v1/projects/mirrors%2Fgh"
	register := fmt.Sprintf(`{"upstream": %q, "host": "github", "credential": "gh"}`, u.URL())

	// 1. The registration's clone on a fails: the wrong password.
	refused := u.Refused()
	registerFailingMirror(t, a, b, api, register)
	perClone := u.Refused() - refused
	t.Logf("the registration's clone with a wrong password: the upstream refused %d requests", perClone)
	if perClone == 0 {
		t.Fatalf("the failed clone made the upstream refuse nothing")
	}

	// A burst of pins over both replicas: the first retries the clone (the
	// registration's failure sets no step), the others meet the clone
	// running (503) or the recorded failure (502 with Retry-After).
	refused = u.Refused()
	start := time.Now()
	burst := pinBurst(t, replicas, api, 100, func() string { return u.First })
	burstRefused, allowed := u.Refused()-refused, pacedTries(time.Since(start), retryStep)
	statuses := map[int]int{}
	for _, ans := range burst {
		statuses[ans.status]++
	}
	t.Logf("%d pins on the failed mirror over both replicas: answers %v; the upstream refused %d requests (%d per clone; the pace allows %d clone(s) in the burst's %v)",
		len(burst), statuses, burstRefused, perClone, allowed, time.Since(start).Round(time.Millisecond))
	if burstRefused == 0 {
		t.Errorf("no pin of the burst tried the clone again")
	}
	if burstRefused > allowed*perClone {
		t.Errorf("%d pins over two replicas made the upstream refuse %d requests, want at most %d (%d clone(s) of %d)",
			len(burst), burstRefused, allowed*perClone, allowed, perClone)
	}
	var recorded string
	for _, ans := range burst {
		switch {
		case ans.status == 502 && ans.code == "upstream_rejected" && ans.retryAfter > 0:
			if recorded == "" {
				recorded = ans.msg
			} else if ans.msg != recorded {
				t.Errorf("pin of the burst: %v, want the recorded failure %q", ans, recorded)
			}
		case ans.status == 503 && ans.retryAfter > 0: // the retry's clone running
		default:
			t.Errorf("pin of the burst: %v, want 502 upstream_rejected or 503, with Retry-After", ans)
		}
	}

	// pinsWithin pins on each replica in turn, each pin alone, and fails
	// the test for any that asked the upstream or answered other than the
	// recorded failure with Retry-After.
	pinsWithin := func(what string, id int) {
		t.Helper()
		for ri, s := range replicas {
			before := u.Refused()
			ans := s.pinSHA(t, api, id+ri, u.First)
			asked := u.Refused() - before
			t.Logf("%s, pin on replica %d: %v; the upstream refused %d requests", what, ri, ans, asked)
			if ans.status != 502 || ans.code != "upstream_rejected" || ans.retryAfter <= 0 || ans.msg != recorded {
				t.Errorf("%s, pin on replica %d: %v, want 502 upstream_rejected %q with Retry-After", what, ri, ans, recorded)
			}
			if pacedTries(time.Since(start), retryStep) > 1 {
				continue // a slow machine outlasted the step: a retry is due
			}
			if ans.retryAfter > int(retryStep/time.Second) {
				t.Errorf("%s, pin on replica %d: Retry-After %d, want at most the step's %v left", what, ri, ans.retryAfter, retryStep)
			}
			if asked != 0 {
				t.Errorf("%s, a pin on replica %d within the step made the upstream refuse %d requests, want 0", what, ri, asked)
			}
		}
	}
	pinsWithin("after the burst", 300)

	// 2. The file written again as it was, then another credential
	// rotated: this mirror's entry is unchanged, so neither replica
	// restarts the pace.
	if mod := writeCreds("wrong-password", "other-0"); !mod.After(failedAt) {
		t.Fatalf("the rewrite left the file's modification time at %v (failure read %v): the test checks nothing", mod, failedAt)
	}
	pinsWithin("the same content written again", 310)
	writeCreds("wrong-password", "other-1")
	pinsWithin("another credential rotated", 320)
	if n := pacedTries(time.Since(start), retryStep); n > 1 {
		t.Logf("the checks within the step outlasted it (%v): the pins after it were allowed to retry", time.Since(start))
	}

	// The mirror's own entry fixed: the next pin on b (the registration
	// and its failed clone were a's) clones at once.
	writeCreds(testdata.UpstreamPassword, "other-1")
	fetches := u.Fetches()
	fixed := b.pinSHA(t, api, 400, u.First)
	t.Logf("pin on the other replica once the mirror's credential is fixed: %v; %d fetches served", fixed, u.Fetches()-fetches)
	if fixed.status != 201 || fixed.sha != u.First {
		t.Fatalf("pin on the other replica once the credential is fixed = %v, want 201 at %s", fixed, u.First)
	}
	if u.Fetches() == fetches {
		t.Errorf("the pin once the credential was fixed served no fetch at the upstream")
	}
	if _, pj := a.call(t, "GET", api, ""); pj["state"] != "ready" {
		t.Errorf("after the clone on b, a sees %v, want ready", pj)
	}

	// 3. The upstream stops taking the mirror's credential. A pin of a SHA
	// the mirror lacks on a: one fetch, refused.
	u.SetPassword("rotated-at-the-host")
	absent := func() string {
		buf := make([]byte, 20)
		if _, err := rand.Read(buf); err != nil {
			t.Fatal(err)
		}
		return hex.EncodeToString(buf)
	}
	refused = u.Refused()
	startA := time.Now()
	first := a.pinSHA(t, api, 500, absent())
	perFetch := u.Refused() - refused
	t.Logf("pin of a SHA the mirror lacks on a, credential refused: %v; the upstream refused %d requests", first, perFetch)
	if first.status != 502 || first.code != "upstream_rejected" || first.retryAfter <= 0 {
		t.Errorf("pin of a SHA the mirror lacks, credential refused = %v, want 502 upstream_rejected with Retry-After", first)
	}
	if perFetch == 0 {
		t.Fatalf("the first pin after the refusal did not ask the upstream")
	}

	// A burst over both replicas, every pin a SHA of its own: within its
	// refusal pace a replica answers at once. Each replica asks once per
	// pace: one batch, a fetch and, when the batch holds several callers'
	// SHAs (pins gathered while the lease in Redis was waited for), the
	// probe asked alongside it, each a git process the upstream refuses
	// perFetch requests.
	refused = u.Refused()
	startB := time.Now()
	burst = pinBurst(t, replicas, api, 600, absent)
	burstRefused = u.Refused() - refused
	// a's first try was the pin before; b's falls within the burst.
	triesA, triesB := pacedTries(time.Since(startA), refusedPace)-1, pacedTries(time.Since(startB), refusedPace)
	clear(statuses)
	for _, ans := range burst {
		statuses[ans.status]++
		if ans.status != 502 || ans.code != "upstream_rejected" || ans.retryAfter <= 0 {
			t.Errorf("pin of a SHA the mirror lacks within the refusal pace: %v, want 502 upstream_rejected with Retry-After", ans)
		}
	}
	perBatch := 2 * perFetch
	t.Logf("%d pins of SHAs the mirror lacks over both replicas: answers %v; the upstream refused %d requests (%d per git process; the paces allow a %d more batch(es), b %d, in %v)",
		len(burst), statuses, burstRefused, perFetch, triesA, triesB, time.Since(startB).Round(time.Millisecond))
	if burstRefused > (triesA+triesB)*perBatch {
		t.Errorf("%d pins over two replicas made the upstream refuse %d requests, want at most %d (per replica and pace one batch: a fetch and its probe, %d each)",
			len(burst), burstRefused, (triesA+triesB)*perBatch, perFetch)
	}

	// Pins of a SHA the mirror has need no fetch: 201 on both replicas.
	for ri, s := range replicas {
		if ans := s.pinSHA(t, api, 800+ri, u.First); ans.status != 201 || ans.sha != u.First {
			t.Errorf("pin on replica %d of a SHA the mirror has, its credential refused: %v, want 201", ri, ans)
		}
	}
}

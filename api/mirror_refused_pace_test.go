package api_test

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/mirrors"
)

// absentSHA is a SHA no repository has.
func absentSHA(t *testing.T) string {
	t.Helper()
	b := make([]byte, 20)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func ghPinPath(id int) string {
	return fmt.Sprintf("/api/v1/projects/mirrors%%2Fgh/pipelines/%d/ref", id)
}

// retryAfter is an answer's Retry-After in seconds, 0 when absent.
func retryAfter(a answer) int {
	n, _ := strconv.Atoi(a.header.Get("Retry-After"))
	return n
}

// TestReadyMirrorRefusedCredentialIsPaced: a ready mirror whose upstream
// stopped taking its credential. Pins of SHAs the mirror lacks, whatever
// SHAs and however many, send the credential to the upstream once per
// pace: the others are answered 502 upstream_rejected at once, with
// Retry-After. Callers who queued behind the refused fetch get the refusal
// without a request of their own; pins of SHAs the mirror has are
// unaffected; a PUT of the mirror or a changed credential ends the pace.
// (The upstream refuses a git fetch twice: git asks without a credential
// first.)
func TestReadyMirrorRefusedCredentialIsPaced(t *testing.T) {
	t.Run("within the pace", func(t *testing.T) {
		f := newMirrorFixture(t, time.Minute, func(c *api.Config) { c.Projects.(*mirrors.Projects).Fetcher.RefusedPace = time.Hour })
		f.readyMirror(t, "gitlab")
		dir, err := f.projects.Repos.RepoPath(gitops.ProjectName("mirrors/gh"))
		if err != nil {
			t.Fatal(err)
		}
		f.upstream.SetPassword("rotated")
		refused := func(t *testing.T, a answer, what string) {
			t.Helper()
			if a.status != http.StatusBadGateway || a.errCode() != "upstream_rejected" || retryAfter(a) <= 0 {
				t.Errorf("%s: %d Retry-After %q %s, want 502 upstream_rejected with Retry-After", what, a.status, a.header.Get("Retry-After"), a.raw)
			}
		}
		before := f.upstream.Refused()

		// The first pin's fetch is held at the upstream while 10 more queue
		// behind it for the next fetch.
		sha := absentSHA(t)
		f.upstream.Stall()
		answers := make([]answer, 11)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); answers[0] = f.do(t, http.MethodPut, ghPinPath(1), `{"sha": "`+sha+`"}`) }()
		for f.upstream.Stalled() == 0 {
			time.Sleep(5 * time.Millisecond)
		}
		for i := 1; i < len(answers); i++ {
			body := `{"sha": "` + sha + `"}`
			if i%2 == 0 {
				body = `{"sha": "` + absentSHA(t) + `"}`
			}
			wg.Add(1)
			go func() { defer wg.Done(); answers[i] = f.do(t, http.MethodPut, ghPinPath(1+i), body) }()
		}
		for {
			if n, _ := f.projects.Fetcher.Queued(dir); n == len(answers)-1 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		f.upstream.Release()
		wg.Wait()
		queued := f.upstream.Refused() - before
		for i, a := range answers {
			refused(t, a, fmt.Sprintf("pin %d of the first batches", i))
		}
		// Nine more, one after another: the same SHA and others.
		for i := range 9 {
			body := `{"sha": "` + sha + `"}`
			if i%2 == 0 {
				body = `{"sha": "` + absentSHA(t) + `"}`
			}
			a := f.do(t, http.MethodPut, ghPinPath(20+i), body)
			refused(t, a, fmt.Sprintf("pin %d after the refusal", 20+i))
			answers = append(answers, a)
		}
		all := f.upstream.Refused() - before
		t.Logf("20 pins of SHAs the mirror lacks (11 concurrent, 10 of them queued behind the first fetch, then 9 in a row): the upstream refused %d requests (%d by the first 11); answers %d Retry-After %q %s",
			all, queued, answers[0].status, answers[0].header.Get("Retry-After"), answers[0].raw)
		if all != 2 {
			t.Errorf("20 pins within the pace made the upstream refuse %d requests, want 2 (one git fetch)", all)
		}

		// A SHA the mirror has needs no fetch.
		if a := f.do(t, http.MethodPut, ghPinPath(40), `{"sha": "`+f.upstream.First+`"}`); a.status != http.StatusCreated {
			t.Errorf("pin of a SHA the mirror has, within the pace: %d %s, want 201", a.status, a.raw)
		}

		// A PUT of the mirror ends the pace: the next pin asks again.
		if a := f.register(t, "gitlab"); a.status != http.StatusOK {
			t.Fatalf("PUT of the mirror: %d %s", a.status, a.raw)
		}
		before = f.upstream.Refused()
		a := f.do(t, http.MethodPut, ghPinPath(41), `{"sha": "`+sha+`"}`)
		refused(t, a, "pin after a PUT")
		afterPut := f.upstream.Refused() - before
		before = f.upstream.Refused()
		refused(t, f.do(t, http.MethodPut, ghPinPath(42), `{"sha": "`+sha+`"}`), "second pin after a PUT")
		again := f.upstream.Refused() - before
		t.Logf("after a PUT of the mirror: the first pin made %d refused requests, the next %d", afterPut, again)
		if afterPut != 2 || again != 0 {
			t.Errorf("after a PUT the pins made %d then %d refused requests, want 2 then 0", afterPut, again)
		}

		// The credentials file catches up: the pace ends at once.
		writeCredentials(t, f.creds, f.upstream, "rotated")
		fetches := f.upstream.Fetches()
		if a := f.do(t, http.MethodPut, ghPinPath(43), `{"merge_request_iid": 1}`); a.status != http.StatusCreated {
			t.Errorf("pin after the credentials file changed: %d %s, want 201", a.status, a.raw)
		}
		if f.upstream.Fetches() == fetches {
			t.Errorf("the pin after the credentials file changed did not fetch")
		}
	})

	t.Run("after the pace", func(t *testing.T) {
		f := newMirrorFixture(t, time.Minute, func(c *api.Config) { c.Projects.(*mirrors.Projects).Fetcher.RefusedPace = time.Second })
		f.readyMirror(t, "gitlab")
		f.upstream.SetPassword("rotated")
		var waits []int
		for try := range 3 {
			before := f.upstream.Refused()
			a := f.do(t, http.MethodPut, ghPinPath(1+try), `{"sha": "`+absentSHA(t)+`"}`)
			n := f.upstream.Refused() - before
			waits = append(waits, retryAfter(a))
			t.Logf("pin once the last pace passed: %d refused requests; %d Retry-After %q", n, a.status, a.header.Get("Retry-After"))
			if a.status != http.StatusBadGateway || a.errCode() != "upstream_rejected" || n != 2 {
				t.Errorf("pin after the pace: %d %s with %d refused requests, want 502 upstream_rejected after one fetch (2)", a.status, a.raw, n)
			}
			if try < 2 { // the pace began before the answer was sent
				time.Sleep(time.Duration(retryAfter(a)) * time.Second)
			}
		}
		if fmt.Sprint(waits) != "[1 2 4]" {
			t.Errorf("Retry-After of the refusals one pace apart = %v, want [1 2 4] (the pace doubles)", waits)
		}
	})
}

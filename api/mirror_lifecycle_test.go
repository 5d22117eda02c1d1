package api_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// A pin on a mirror whose first clone failed tries the clone again in its
// own request and answers what that gives: 502 while the upstream refuses
// the credential, 201 once it takes it (the mirror is then ready); 503
// upstream_unavailable while the upstream is down.
func TestMirrorPinOnFailedMirrorRetriesTheClone(t *testing.T) {
	const pinPath = "/api/v1/projects/mirrors%2Fgh/pipelines/1/ref"
	t.Run("rejected, then fixed", func(t *testing.T) {
		f := newMirrorFixture(t, time.Minute)
		writeCredentials(t, f.creds, f.upstream, "wrong-password")
		f.failedMirror(t, "gitlab")
		refused := f.upstream.Refused()
		a := f.do(t, http.MethodPut, pinPath, `{"sha": "`+f.upstream.First+`"}`)
		t.Logf("pin on the failed mirror: %d %s", a.status, a.raw)
		if a.status != http.StatusBadGateway || a.errCode() != "upstream_rejected" {
			t.Errorf("pin on a failed mirror, credential still refused: %d %s, want 502 upstream_rejected", a.status, a.raw)
		}
		if f.upstream.Refused() == refused {
			t.Errorf("the pin did not try the clone again (the upstream heard nothing)")
		}
		if a := f.do(t, http.MethodGet, mirrorPath, ""); a.body["state"] != "failed" || a.body["last_error"] == nil {
			t.Errorf("after a failed retry: %s, want failed with last_error", a.raw)
		}
		writeCredentials(t, f.creds, f.upstream, testdata.UpstreamPassword)
		a = f.do(t, http.MethodPut, pinPath, `{"sha": "`+f.upstream.First+`"}`)
		t.Logf("pin once the credential is right: %d %s", a.status, a.raw)
		if a.status != http.StatusCreated || a.body["sha"] != f.upstream.First {
			t.Fatalf("pin on a failed mirror whose upstream now answers: %d %s, want 201", a.status, a.raw)
		}
		if a := f.do(t, http.MethodGet, mirrorPath, ""); a.body["state"] != "ready" || a.body["last_error"] != nil {
			t.Errorf("after the pin's clone: %s, want ready", a.raw)
		}
		if got, _ := gitIn(t, filepath.Join(f.root, "mirrors", "gh.git"), "rev-parse", "refs/pipelines/1"); got != f.upstream.First {
			t.Errorf("refs/pipelines/1 = %q, want %s", got, f.upstream.First)
		}
	})
	t.Run("unavailable", func(t *testing.T) {
		f := newMirrorFixture(t, time.Minute)
		f.upstream.Stop()
		f.failedMirror(t, "gitlab")
		a := f.do(t, http.MethodPut, pinPath, `{"sha": "`+f.upstream.First+`"}`)
		t.Logf("pin on the failed mirror, upstream down: %d %s", a.status, a.raw)
		if a.status != http.StatusServiceUnavailable || a.errCode() != "upstream_unavailable" || a.header.Get("Retry-After") == "" {
			t.Errorf("pin on a failed mirror, upstream down: %d %s, want 503 upstream_unavailable with Retry-After", a.status, a.raw)
		}
		if a := f.do(t, http.MethodGet, pinPath, ""); a.status != http.StatusNotFound {
			t.Errorf("a failed pin left something: %d %s", a.status, a.raw)
		}
	})
}

// Pins racing a mirror's DELETE leave no record behind: the DELETE removes
// the repository before the records, and a pin that opened the repository
// before it went removes what it wrote. Several rounds, each a fresh mirror
// pinned by 8 clients without pause while it is deleted; the records are
// read from Redis itself (the API answers 404 for a project that is gone,
// whatever Redis holds).
func TestMirrorDeleteRacingPinsLeavesNoRecord(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	store := f.projects.Store
	const project = refs.Project("mirrors/gh")
	var nextID atomic.Int64
	for round := range 8 {
		if a := f.register(t, "github"); a.status != http.StatusAccepted {
			t.Fatalf("PUT mirror: %d %s", a.status, a.raw)
		}
		if a := f.awaitState(t, mirrorPath); a.body["state"] != "ready" {
			out, _ := exec.Command("find", filepath.Join(f.root, "mirrors")).CombinedOutput()
			t.Fatalf("mirror not ready: %d %s\n%s", a.status, a.raw, out)
		}
		var stop atomic.Bool
		var pinned atomic.Int64
		var wg sync.WaitGroup
		var ids sync.Map // pipeline ids some pin was sent for
		statuses := make(chan int, 100000)
		var failures sync.Map // body of each 500 answer
		for range 8 {
			wg.Add(1)
			// Each client pins a few pipelines over and over: a repeated
			// pin is answered from its ref, quickly, and writes its
			// record again.
			base := nextID.Add(4)
			go func() {
				defer wg.Done()
				for n := int64(0); !stop.Load(); n++ {
					id := base - n%4
					ids.Store(id, true)
					a := f.do(t, http.MethodPut, fmt.Sprintf("/api/v1/projects/mirrors%%2Fgh/pipelines/%d/ref", id), `{"sha": "`+f.upstream.First+`"}`)
					statuses <- a.status
					if a.status == http.StatusInternalServerError {
						failures.Store(string(a.raw), true)
					}
					if a.status == http.StatusOK || a.status == http.StatusCreated {
						pinned.Add(1)
					}
				}
			}()
		}
		// Let pins flow, then delete in their midst.
		waitUntil(t, func() bool { return pinned.Load() >= 40 })
		time.Sleep(time.Duration(rand.IntN(10)) * time.Millisecond)
		if a := f.do(t, http.MethodDelete, mirrorPath, ""); a.status != http.StatusNoContent {
			t.Fatalf("round %d: DELETE = %d %s", round, a.status, a.raw)
		}
		time.Sleep(20 * time.Millisecond) // pins after the DELETE too
		stop.Store(true)
		wg.Wait()
		close(statuses)
		counts := map[int]int{}
		for s := range statuses {
			counts[s]++
		}
		var left []int64
		ids.Range(func(k, _ any) bool {
			id := k.(int64)
			if _, ok, err := store.Get(context.Background(), project, refs.PipelineID(id)); err != nil {
				t.Fatal(err)
			} else if ok {
				left = append(left, id)
			}
			return true
		})
		t.Logf("round %d: pin answers %v; records left after the DELETE: %d", round, counts, len(left))
		if len(left) > 0 {
			t.Errorf("round %d: pins %v have records after the mirror was deleted", round, left)
		}
		if counts[http.StatusInternalServerError] > 0 {
			t.Errorf("round %d: %d pins answered 500", round, counts[http.StatusInternalServerError])
			failures.Range(func(k, _ any) bool { t.Logf("500 answer: %s", k); return true })
			for _, line := range strings.Split(f.logs.String(), "\n") {
				if strings.Contains(line, "status=500") || strings.Contains(line, "level=ERROR") {
					t.Logf("server: %s", line)
				}
			}
		}
		if _, err := os.Stat(filepath.Join(f.root, "mirrors", "gh.git", "HEAD")); !os.IsNotExist(err) {
			t.Fatalf("round %d: the mirror is still there (%v)", round, err)
		}
	}
}

// A pin that opened a mirror's repository before its DELETE reads the
// mirror's record next (FetchForPin; HostKind for a pin by merge request):
// once the DELETE has removed the mirror, that read says the project is
// gone (404), never an untyped error (500). This is the step of
// TestMirrorDeleteRacingPinsLeavesNoRecord that answered 500 under load,
// taken one at a time.
func TestMirrorPinStepsAfterDeleteAnswerProjectNotFound(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	f.readyMirror(t, "github")
	const project = refs.Project("mirrors/gh")
	repo, err := f.projects.Repos.Open(project)
	if err != nil {
		t.Fatal(err)
	}
	if a := f.do(t, http.MethodDelete, mirrorPath, ""); a.status != http.StatusNoContent {
		t.Fatalf("DELETE = %d %s", a.status, a.raw)
	}
	var gone *refs.ProjectNotFoundError
	err = f.projects.FetchForPin(t.Context(), repo, refs.PinRequest{Project: project, PipelineID: 1, SHA: refs.ObjectID(f.upstream.First)}, "")
	t.Logf("FetchForPin after the DELETE: %T %v", err, err)
	if !errors.As(err, &gone) {
		t.Errorf("FetchForPin on a deleted mirror = %T %v, want *refs.ProjectNotFoundError", err, err)
	}
	_, err = f.projects.HostKind(project)
	t.Logf("HostKind after the DELETE: %T %v", err, err)
	if !errors.As(err, &gone) {
		t.Errorf("HostKind of a deleted mirror = %T %v, want *refs.ProjectNotFoundError", err, err)
	}
	err = f.projects.FetchMergeInputs(t.Context(), repo, project, nil)
	t.Logf("FetchMergeInputs after the DELETE: %T %v", err, err)
	if !errors.As(err, &gone) {
		t.Errorf("FetchMergeInputs on a deleted mirror = %T %v, want *refs.ProjectNotFoundError", err, err)
	}
}

// Registrations and updates racing a DELETE and each other are decided
// one at a time under the mirror's lock: none of them writes into a
// repository that is being removed (which answers 503 without the lock),
// and the DELETE never answers 204 for a mirror that then stays.
func TestMirrorRegistrationsRacingDeleteAndEachOther(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	body := func(host string) string {
		return fmt.Sprintf(`{"upstream": %q, "host": %q, "credential": "upstream"}`, f.upstream.URL(), host)
	}
	for round := range 10 {
		f.readyMirror(t, "github")
		var wg sync.WaitGroup
		answers := make([]answer, 4)
		for i, host := range []string{"gitlab", "gitea", "generic"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers[i] = f.do(t, http.MethodPut, mirrorPath, body(host))
			}()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[3] = f.do(t, http.MethodDelete, mirrorPath, "")
		}()
		wg.Wait()
		for i, a := range answers[:3] {
			if a.status != http.StatusOK && a.status != http.StatusAccepted {
				t.Errorf("round %d: PUT %d racing a DELETE: %d %s, want 200 or 202", round, i, a.status, a.raw)
			}
		}
		if a := answers[3]; a.status != http.StatusNoContent {
			t.Errorf("round %d: DELETE racing PUTs: %d %s, want 204", round, a.status, a.raw)
		}
		// Whatever the order, what is there now is one whole record (a
		// clone restarted after the DELETE, or nothing): the last word is
		// a DELETE of it.
		f.awaitState(t, mirrorPath)
		if a := f.do(t, http.MethodDelete, mirrorPath, ""); a.status != http.StatusNoContent && a.status != http.StatusNotFound {
			t.Fatalf("round %d: final DELETE: %d %s", round, a.status, a.raw)
		}
		if a := f.do(t, http.MethodGet, mirrorPath, ""); a.status != http.StatusNotFound {
			t.Fatalf("round %d: GET after the final DELETE: %d %s, want 404", round, a.status, a.raw)
		}
	}
}

// Pins cannot make the service hammer a failed mirror's upstream with its
// credential: after the first pin's retry, pins within the retry step
// answer the recorded failure (same status and code) with the seconds left
// in Retry-After and ask the upstream nothing; a second Projects on the
// same repos root (a replica) keeps the same pace; once the step has
// passed the next pin tries again; a PUT of the mirror starts the pace
// over, and so does a fixed credential in the credentials file.
func TestMirrorPinsOnFailedMirrorArePaced(t *testing.T) {
	const pinPath = "/api/v1/projects/mirrors%2Fgh/pipelines/1/ref"
	const project = refs.Project("mirrors/gh")
	f := newMirrorFixture(t, time.Minute, func(c *api.Config) { c.Projects.(*mirrors.Projects).RetryStep = time.Hour })
	pin := func(what string) answer {
		t.Helper()
		a := f.do(t, http.MethodPut, pinPath, `{"sha": "`+f.upstream.First+`"}`)
		t.Logf("%s: %d Retry-After %q %s", what, a.status, a.header.Get("Retry-After"), a.raw)
		return a
	}
	retryAfter := func(a answer) int {
		n, err := strconv.Atoi(a.header.Get("Retry-After"))
		if err != nil {
			return -1
		}
		return n
	}
	writeCredentials(t, f.creds, f.upstream, "wrong-password")
	f.failedMirror(t, "gitlab")

	refused := f.upstream.Refused()
	a := pin("first pin on the failed mirror")
	if a.status != http.StatusBadGateway || a.errCode() != "upstream_rejected" {
		t.Fatalf("first pin: %d %s, want 502 upstream_rejected", a.status, a.raw)
	}
	if f.upstream.Refused() == refused {
		t.Fatalf("the first pin did not try the clone again")
	}
	if n := retryAfter(a); n != 3600 {
		t.Errorf("first pin's Retry-After = %q, want 3600 (the step)", a.header.Get("Retry-After"))
	}
	want := a.errMessage()

	refused = f.upstream.Refused()
	var wg sync.WaitGroup
	answers := make([]answer, 10)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			answers[i] = f.do(t, http.MethodPut, pinPath, `{"sha": "`+f.upstream.First+`"}`)
		}()
	}
	wg.Wait()
	t.Logf("10 pins within the step: upstream refused %d more requests; one answered %d Retry-After %q %s",
		f.upstream.Refused()-refused, answers[0].status, answers[0].header.Get("Retry-After"), answers[0].raw)
	if got := f.upstream.Refused() - refused; got != 0 {
		t.Errorf("10 pins within the step made %d upstream requests, want 0", got)
	}
	for _, a := range answers {
		if a.status != http.StatusBadGateway || a.errCode() != "upstream_rejected" || a.errMessage() != want {
			t.Errorf("pin within the step: %d %s, want 502 upstream_rejected %q", a.status, a.raw, want)
		}
		if n := retryAfter(a); n < 1 || n > 3600 {
			t.Errorf("pin within the step: Retry-After %q, want 1..3600", a.header.Get("Retry-After"))
		}
	}
	if a := f.do(t, http.MethodGet, pinPath, ""); a.status != http.StatusNotFound {
		t.Errorf("a paced pin left something: %d %s", a.status, a.raw)
	}

	// Another replica with the same step keeps the recorded pace.
	err := replicaOf(t, f, time.Hour).CloneForPin(t.Context(), project)
	var later *mirrors.RetryLaterError
	var rejected *mirrors.UpstreamRejectedError
	t.Logf("replica's pin within the step: %T %v", err, err)
	if !errors.As(err, &later) || !errors.As(err, &rejected) || later.Wait <= 0 {
		t.Errorf("replica's pin within the step = %T %v, want *RetryLaterError of *UpstreamRejectedError", err, err)
	}
	if got := f.upstream.Refused() - refused; got != 0 {
		t.Errorf("the replica's pin within the step made %d upstream requests, want 0", got)
	}

	// Once the step has passed (a replica whose step is short), the next
	// pin tries again.
	err = replicaOf(t, f, time.Nanosecond).CloneForPin(t.Context(), project)
	t.Logf("pin after the step: %T %v; upstream refused %d more", err, err, f.upstream.Refused()-refused)
	if !errors.As(err, &rejected) {
		t.Errorf("pin after the step = %T %v, want *UpstreamRejectedError", err, err)
	}
	if f.upstream.Refused() == refused {
		t.Errorf("the pin after the step did not try the clone again")
	}
	refused = f.upstream.Refused()
	if a := pin("pin within the doubled step"); a.status != http.StatusBadGateway || retryAfter(a) <= 3600 {
		t.Errorf("pin after the second retry: %d Retry-After %q, want 502 with more than 3600 (2 h step)", a.status, a.header.Get("Retry-After"))
	}
	if got := f.upstream.Refused() - refused; got != 0 {
		t.Errorf("a pin within the doubled step made %d upstream requests, want 0", got)
	}

	// A PUT of the mirror starts over: its own clone, then a pin tries at once.
	f.failedMirror(t, "gitlab")
	refused = f.upstream.Refused()
	if a := pin("pin after a PUT"); a.status != http.StatusBadGateway || f.upstream.Refused() == refused {
		t.Errorf("pin after a PUT: %d, upstream refused %d more; want 502 after a new try", a.status, f.upstream.Refused()-refused)
	}

	// The credential fixed in the file: the next pin tries at once.
	writeCredentials(t, f.creds, f.upstream, testdata.UpstreamPassword)
	if a := pin("pin once the credential is right"); a.status != http.StatusCreated || a.body["sha"] != f.upstream.First {
		t.Fatalf("pin once the credential is right: %d %s, want 201", a.status, a.raw)
	}
	if a := f.do(t, http.MethodGet, mirrorPath, ""); a.body["state"] != "ready" {
		t.Errorf("after the pin's clone: %s, want ready", a.raw)
	}
}

// A SHA the upstream just said it lacks is answered so again (422
// commit_not_found, the same message) without asking the upstream, for the
// Fetcher's MissingFor; once a pin by merge request brought it, a pin finds
// it; a PUT of the mirror asks again at once; after the window the
// upstream is asked again.
func TestMirrorPinsOfMissingSHAAskTheUpstreamOnce(t *testing.T) {
	// unborn makes a commit the upstream does not have yet, in a clone of
	// its own, and answers it with a push that gives it to the upstream
	// under ref.
	unborn := func(t *testing.T, u *testdata.Upstream, n int) (sha string, push func(ref string)) {
		t.Helper()
		git := cloneUpstream(t, u)
		git("commit", "-q", "--allow-empty", "-m", fmt.Sprint("not upstream yet ", n))
		return git("rev-parse", "HEAD"), func(ref string) { git("push", "-q", "-f", u.Path(), "HEAD:"+ref) }
	}
	requests := func(u *testdata.Upstream) int { return u.Fetches() + u.UploadPackPosts() }
	pinPath := func(id int) string { return fmt.Sprintf("/api/v1/projects/mirrors%%2Fgh/pipelines/%d/ref", id) }

	t.Run("within the window", func(t *testing.T) {
		f := newMirrorFixture(t, time.Minute, func(c *api.Config) { c.Projects.(*mirrors.Projects).Fetcher.MissingFor = time.Hour })
		f.readyMirror(t, "gitlab")
		sha, push := unborn(t, f.upstream, 1)
		before := requests(f.upstream)
		a := f.do(t, http.MethodPut, pinPath(1), `{"sha": "`+sha+`"}`)
		t.Logf("first pin of a SHA the upstream lacks: %d %s; %d upstream requests", a.status, a.raw, requests(f.upstream)-before)
		if a.status != http.StatusUnprocessableEntity || a.errCode() != "commit_not_found" {
			t.Fatalf("first pin of a missing SHA: %d %s, want 422 commit_not_found", a.status, a.raw)
		}
		if requests(f.upstream) == before {
			t.Fatalf("the first pin of a missing SHA did not ask the upstream")
		}
		want := a.errMessage()
		before = requests(f.upstream)
		var wg sync.WaitGroup
		answers := make([]answer, 8)
		for i := range answers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				answers[i] = f.do(t, http.MethodPut, pinPath(2+i), `{"sha": "`+sha+`"}`)
			}()
		}
		wg.Wait()
		t.Logf("8 more pins of it: %d upstream requests; one answered %d %s", requests(f.upstream)-before, answers[0].status, answers[0].raw)
		for _, a := range answers {
			if a.status != http.StatusUnprocessableEntity || a.errCode() != "commit_not_found" || a.errMessage() != want {
				t.Errorf("pin of a SHA missing upstream: %d %s, want 422 commit_not_found %q", a.status, a.raw, want)
			}
		}
		if got := requests(f.upstream) - before; got != 0 {
			t.Errorf("8 pins of a SHA the upstream just lacked made %d upstream requests, want 0", got)
		}

		// Pushed upstream, it is still answered from what was heard ...
		push("refs/merge-requests/1/merge")
		if a := f.do(t, http.MethodPut, pinPath(20), `{"sha": "`+sha+`"}`); a.status != http.StatusUnprocessableEntity || requests(f.upstream) != before {
			t.Errorf("pin within the window after the push: %d %s, %d upstream requests; want 422 from memory", a.status, a.raw, requests(f.upstream)-before)
		}
		// ... until a pin that fetches it brings it.
		if a := f.do(t, http.MethodPut, pinPath(21), `{"merge_request_iid": 1}`); a.status != http.StatusCreated || a.body["sha"] != sha {
			t.Fatalf("pin by merge request: %d %s, want 201 at %s", a.status, a.raw, sha)
		}
		if a := f.do(t, http.MethodPut, pinPath(22), `{"sha": "`+sha+`"}`); a.status != http.StatusCreated {
			t.Errorf("pin of the SHA another pin fetched: %d %s, want 201", a.status, a.raw)
		}

		// A PUT of the mirror forgets what the upstream lacked.
		sha2, push2 := unborn(t, f.upstream, 2)
		if a := f.do(t, http.MethodPut, pinPath(30), `{"sha": "`+sha2+`"}`); a.status != http.StatusUnprocessableEntity {
			t.Fatalf("pin of a missing SHA: %d %s, want 422", a.status, a.raw)
		}
		push2("refs/heads/later")
		if a := f.do(t, http.MethodPut, pinPath(31), `{"sha": "`+sha2+`"}`); a.status != http.StatusUnprocessableEntity {
			t.Errorf("pin within the window after the push: %d %s, want 422 from memory", a.status, a.raw)
		}
		if a := f.register(t, "gitlab"); a.status != http.StatusOK {
			t.Fatalf("PUT of the mirror: %d %s", a.status, a.raw)
		}
		if a := f.do(t, http.MethodPut, pinPath(32), `{"sha": "`+sha2+`"}`); a.status != http.StatusCreated {
			t.Errorf("pin after a PUT of the mirror: %d %s, want 201", a.status, a.raw)
		}
	})
	t.Run("after the window", func(t *testing.T) {
		f := newMirrorFixture(t, time.Minute, func(c *api.Config) { c.Projects.(*mirrors.Projects).Fetcher.MissingFor = time.Nanosecond })
		f.readyMirror(t, "gitlab")
		sha, push := unborn(t, f.upstream, 3)
		if a := f.do(t, http.MethodPut, pinPath(1), `{"sha": "`+sha+`"}`); a.status != http.StatusUnprocessableEntity {
			t.Fatalf("pin of a missing SHA: %d %s, want 422", a.status, a.raw)
		}
		push("refs/heads/later")
		if a := f.do(t, http.MethodPut, pinPath(2), `{"sha": "`+sha+`"}`); a.status != http.StatusCreated {
			t.Errorf("pin after the window, the SHA pushed: %d %s, want 201", a.status, a.raw)
		}
	})
}

package api_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/limits"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

// replicaOf is another process's view of the fixture's repos root and
// Redis, with a retry step of its own.
func replicaOf(t *testing.T, f *mirrorFixture, step time.Duration) *mirrors.Projects {
	t.Helper()
	policy, err := mirrors.ParseUpstreamPolicy(testdata.LoopbackUpstreams)
	if err != nil {
		t.Fatal(err)
	}
	root := &gitops.Root{Dir: f.root}
	p := &mirrors.Projects{Policy: policy, Repos: root, Fetcher: &gitops.Fetcher{Root: root},
		Store: f.projects.Store, Credentials: &mirrors.CredentialFile{Path: f.creds}, RetryStep: step}
	t.Cleanup(p.Close)
	return p
}

// writeCredentialsFor writes one credential "upstream" with password for
// the hosts of every upstream given.
func writeCredentialsFor(t *testing.T, path, password string, ups ...*testdata.Upstream) {
	t.Helper()
	var hosts []string
	for _, u := range ups {
		hosts = append(hosts, u.CredentialHost())
	}
	writeCredentialHosts(t, path, password, hosts...)
}

// writeCredentialHosts writes one credential "upstream" with password for
// the hosts given (a URL's scheme, host and port each).
func writeCredentialHosts(t *testing.T, path, password string, hosts ...string) {
	t.Helper()
	body, _ := json.Marshal(map[string]map[string]any{"upstream": {
		"username": testdata.UpstreamUser, "password": password, "hosts": hosts}})
	if err := os.WriteFile(path+".tmp", body, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// mirrorRecord is the refkeeper section of the mirror's config, staged or
// in place, for the test's log.
func mirrorRecord(t *testing.T, f *mirrorFixture) string {
	t.Helper()
	var out strings.Builder
	cfgs, _ := filepath.Glob(filepath.Join(f.root, ".mirrors", "mirrors", "gh.git", "config"))
	cfgs = append(cfgs, filepath.Join(f.root, "mirrors", "gh.git", "config"))
	for _, c := range cfgs {
		b, _ := exec.Command("git", "config", "-f", c, "--get-regexp", "^refkeeper[.]").CombinedOutput()
		out.Write(b)
	}
	return out.String()
}

// A pin's retry of a failed clone runs here; another replica deletes the
// mirror and registers it again with another upstream (C), whose clone
// runs there. The old clone then fails: its failure is dropped (the record
// holds another generation), so the new mirror stays cloning upstream C,
// with no error and no pace that would start a third clone.
func TestMirrorStaleCloneFailureLeavesReRegisteredMirrorAlone(t *testing.T) {
	const project = refs.Project("mirrors/gh")
	f := newMirrorFixture(t, 2*time.Second)
	c := testdata.StartUpstream(t)
	writeCredentialsFor(t, f.creds, "wrong-password", f.upstream, c)
	f.failedMirror(t, "gitlab")
	// This replica retries within a pin; the upstream holds the request,
	// the pin gives up after its upstream timeout and the clone goes on.
	f.upstream.Stall()
	a := f.mirrorPin(t, 1, `{"sha": "`+f.upstream.First+`"}`)
	t.Logf("pin here, upstream held: %d %s", a.status, a.raw)

	ended := func() int {
		return strings.Count(f.logs.String(), "mirror clone failed") + strings.Count(f.logs.String(), "clone superseded")
	}
	endedBefore := ended()
	other := replicaOf(t, f, time.Hour)
	writeCredentialsFor(t, f.creds, testdata.UpstreamPassword, f.upstream, c)
	if err := other.Delete(t.Context(), project); err != nil {
		t.Fatalf("the other replica deletes: %v", err)
	}
	c.Stall()
	if _, _, err := other.Register(t.Context(), mirrors.MirrorRequest{Project: project, Upstream: c.URL(), Host: "gitlab", Credential: "upstream"}); err != nil {
		t.Fatalf("the other replica registers upstream C: %v", err)
	}
	// C's clone starts once the old clone has stopped writing into the
	// staged repository.
	waitUntil(t, func() bool { return c.Stalled() > 0 })
	f.upstream.Release() // whatever is left of the old clone ends now
	waitUntil(t, func() bool { return ended() > endedBefore })
	got := f.do(t, http.MethodGet, mirrorPath, "")
	t.Logf("while C's clone runs there, after the old clone ended: %s\nrecord:\n%s", got.raw, mirrorRecord(t, f))
	if got.body["state"] != "cloning" || got.body["upstream"] != c.URL() || got.body["last_error"] != nil {
		t.Errorf("the re-registered mirror (upstream C, clone running) = %s; want cloning C with no error", got.raw)
	}
	c.Release()
	if got := f.awaitState(t, mirrorPath); got.body["state"] != "ready" || got.body["upstream"] != c.URL() {
		t.Errorf("after C's clone: %s, want ready with upstream C", got.raw)
	}
}

// A PUT that changes the upstream while the first clone of the old one
// runs stops that clone and clones the new upstream: the mirror ends ready
// with B's refs, not A's. The new clone's git starts only after the old
// one's ended (one git writes into the staged repository at a time).
func TestMirrorPutNewUpstreamDuringCloneClonesTheNewUpstream(t *testing.T) {
	f := newMirrorFixture(t, time.Minute)
	b := testdata.StartUpstream(t)
	writeCredentialsFor(t, f.creds, testdata.UpstreamPassword, f.upstream, b)
	// A commit only the first upstream has.
	git := cloneUpstream(t, f.upstream)
	git("commit", "-q", "--allow-empty", "-m", "only on A")
	git("push", "-q", f.upstream.Path(), "HEAD:refs/heads/only-on-a")
	f.upstream.Stall()
	if a := f.register(t, "gitlab"); a.status != http.StatusAccepted {
		t.Fatalf("PUT A: %d %s", a.status, a.raw)
	}
	waitUntil(t, func() bool { return f.upstream.Stalled() > 0 })
	b.Stall()
	a := f.do(t, http.MethodPut, mirrorPath, fmt.Sprintf(`{"upstream": %q, "host": "gitlab", "credential": "upstream"}`, b.URL()))
	t.Logf("PUT with upstream B while A's clone runs: %d %s", a.status, a.raw)
	if a.status != http.StatusAccepted || a.body["upstream"] != b.URL() {
		t.Errorf("PUT B: %d %s, want 202 with upstream B", a.status, a.raw)
	}
	deadline := time.Now().Add(10 * time.Second)
	for b.Stalled() == 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	aHeld := f.upstream.Stalled()
	t.Logf("B's clone asking: %v; A's requests still held then: %d", b.Stalled() > 0, aHeld)
	if b.Stalled() == 0 {
		t.Errorf("no clone of upstream B started")
	}
	if aHeld != 0 {
		t.Errorf("B's clone started while A's git still ran (%d requests held): two gits in one staged repository", aHeld)
	}
	f.upstream.Release()
	b.Release()
	got := f.awaitState(t, mirrorPath)
	onlyA := f.mirrorGit(t, "for-each-ref", "refs/heads/only-on-a")
	t.Logf("after the clones ended: %s; refs/heads/only-on-a in the mirror: %q; upstream B heard %d fetches", got.raw, onlyA, b.Fetches())
	if got.body["state"] != "ready" || got.body["upstream"] != b.URL() || onlyA != "" || b.Fetches() == 0 {
		t.Errorf("the mirror is %s with upstream %v, A's ref %q, B fetched %d times: want ready, cloned from B", got.body["state"], got.body["upstream"], onlyA, b.Fetches())
	}
}

// A failed mirror's retry below the disk floor answers 507
// insufficient_storage, and so does every pin while the floor holds (not a
// recorded 503); it counts no attempt, so once the floor allows, the next
// pin tries the upstream at once. The record holds no password.
func TestMirrorPinBelowDiskFloorAnswers507AndCountsNoAttempt(t *testing.T) {
	f := newMirrorFixture(t, time.Minute, func(c *api.Config) { c.Projects.(*mirrors.Projects).RetryStep = time.Hour })
	writeCredentials(t, f.creds, f.upstream, "wrong-password")
	f.failedMirror(t, "gitlab")
	min, err := limits.ParseSize("99.99%")
	if err != nil {
		t.Fatal(err)
	}
	f.projects.Repos.DiskFloor = &limits.DiskFloor{Path: f.root, Min: min}
	first := f.mirrorPin(t, 1, `{"sha": "`+f.upstream.First+`"}`)
	t.Logf("pin whose retry meets the disk floor: %d Retry-After %q %s", first.status, first.header.Get("Retry-After"), first.raw)
	second := f.mirrorPin(t, 1, `{"sha": "`+f.upstream.First+`"}`)
	t.Logf("next pin: %d Retry-After %q %s", second.status, second.header.Get("Retry-After"), second.raw)
	record := mirrorRecord(t, f)
	t.Logf("record:\n%s", record)
	if strings.Contains(record, testdata.UpstreamPassword) || strings.Contains(record, "wrong-password") {
		t.Errorf("the record holds a password")
	}
	for _, a := range []answer{first, second} {
		if a.status != http.StatusInsufficientStorage || a.errCode() != "insufficient_storage" || a.header.Get("Retry-After") == "" {
			t.Errorf("pin below the floor: %d %s Retry-After %q, want 507 insufficient_storage with Retry-After", a.status, a.raw, a.header.Get("Retry-After"))
		}
	}
	f.projects.Repos.DiskFloor = nil
	refused := f.upstream.Refused()
	third := f.mirrorPin(t, 1, `{"sha": "`+f.upstream.First+`"}`)
	t.Logf("pin once the floor allows: %d %s; upstream refused %d more", third.status, third.raw, f.upstream.Refused()-refused)
	if third.status != http.StatusBadGateway || f.upstream.Refused() == refused {
		t.Errorf("pin once the floor allows: %d, upstream asked %v; want a retry now (502 from the upstream)", third.status, f.upstream.Refused() > refused)
	}
}

// A retry whose clone never got an upstream turn (--max-upstream-fetches
// all taken until the clone timeout) is a stop of the service's own: the
// record says so and counts no attempt, so once a turn is free the next
// pin tries the upstream at once instead of waiting out a step.
func TestMirrorCloneStoppedForATurnCountsNoAttempt(t *testing.T) {
	slots := limits.NewSlots("upstream fetches", 1)
	f := newMirrorFixture(t, 10*time.Second, func(c *api.Config) {
		p := c.Projects.(*mirrors.Projects)
		p.RetryStep, p.CloneTimeout, p.Repos.UpstreamFetches = time.Hour, time.Second, slots
	})
	writeCredentials(t, f.creds, f.upstream, "wrong-password")
	f.failedMirror(t, "gitlab")
	release, ok := slots.TryAcquire()
	if !ok {
		t.Fatal("the only upstream turn is taken")
	}
	refused := f.upstream.Refused()
	busy := f.mirrorPin(t, 1, `{"sha": "`+f.upstream.First+`"}`)
	release()
	t.Logf("pin whose retry got no upstream turn: %d Retry-After %q %s; upstream refused %d more\nrecord:\n%s",
		busy.status, busy.header.Get("Retry-After"), busy.raw, f.upstream.Refused()-refused, mirrorRecord(t, f))
	if busy.status != http.StatusServiceUnavailable || busy.errCode() != "unavailable" {
		t.Errorf("pin whose retry got no turn: %d %s, want 503 unavailable", busy.status, busy.raw)
	}
	next := f.mirrorPin(t, 1, `{"sha": "`+f.upstream.First+`"}`)
	t.Logf("next pin, a turn free: %d %s; upstream refused %d more", next.status, next.raw, f.upstream.Refused()-refused)
	if next.status != http.StatusBadGateway || f.upstream.Refused() == refused {
		t.Errorf("next pin with a turn free: %d, upstream asked %v; want a retry now (502 from the upstream)", next.status, f.upstream.Refused() > refused)
	}
}

// The credential fixed in the credentials file starts the pace over on
// every replica, not only in the process whose clone failed: the record
// keeps the file's modification time as the failed clone read it, and a
// newer file lets the next pin try at once.
func TestMirrorFixedCredentialSeenByEveryReplica(t *testing.T) {
	const project = refs.Project("mirrors/gh")
	f := newMirrorFixture(t, time.Minute, func(c *api.Config) { c.Projects.(*mirrors.Projects).RetryStep = time.Hour })
	writeCredentials(t, f.creds, f.upstream, "wrong-password")
	f.failedMirror(t, "gitlab")
	if a := f.mirrorPin(t, 1, `{"sha": "`+f.upstream.First+`"}`); a.status != http.StatusBadGateway {
		t.Fatalf("first pin: %d %s, want 502", a.status, a.raw)
	}
	// The file unchanged: another replica keeps the pace.
	other := replicaOf(t, f, time.Hour)
	var later *mirrors.RetryLaterError
	if err := other.CloneForPin(t.Context(), project); !errors.As(err, &later) {
		t.Errorf("another replica's pin, file unchanged = %T %v; want *RetryLaterError", err, err)
	}
	writeCredentials(t, f.creds, f.upstream, testdata.UpstreamPassword)
	err := replicaOf(t, f, time.Hour).CloneForPin(t.Context(), project)
	t.Logf("another replica's pin once the credential is fixed: %T %v\nrecord:\n%s", err, err, mirrorRecord(t, f))
	if err != nil {
		t.Errorf("another replica's pin after the credential was fixed = %v; want a retry that succeeds", err)
	}
}

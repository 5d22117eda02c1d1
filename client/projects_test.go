package client_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/client"
	"github.com/refkeeper/refkeeper/testdata"
)

// writeCredentials writes the server's --credentials file with the one
// credential "gh" for the test upstream u, and answers its path.
func writeCredentials(tb testing.TB, u *testdata.Upstream, password string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "credentials.json")
	body := u.CredentialsJSON("gh", password)
	if err := os.WriteFile(path, body, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// waitReady polls GetProject until the mirror has left cloning.
func waitReady(tb testing.TB, c *client.Client, project string) *client.Project {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		p, err := c.GetProject(tb.Context(), project)
		if err != nil {
			tb.Fatal(err)
		}
		if p.State != client.ProjectCloning {
			return p
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s still cloning: %+v", project, p)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestProjectsAgainstServer drives the project endpoints of the server
// through the client: a mirror of a real upstream registered (202, then
// ready), registered again (200), listed with the local project over pages,
// the typed errors of a missing and of a local project, and deleted.
func TestProjectsAgainstServer(t *testing.T) {
	root := t.TempDir()
	testdata.NewMergeRequestProject(t, root) // the local project group/app
	u := testdata.StartUpstream(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "", "--repos", root, "--redis", r.URL(),
		"--credentials", writeCredentials(t, u, testdata.UpstreamPassword), "--upstream-timeout", "30s",
		"--upstream-allow", testdata.LoopbackUpstreams)
	ctx := t.Context()
	c := newClient(t, srv.Base, apiToken, client.Options{})
	const mirror = "mirrors/gh"
	req := client.MirrorRequest{Upstream: u.URL(), Host: client.HostGitHub, Credential: "gh"}

	p, accepted, err := c.PutMirror(ctx, mirror, req)
	if err != nil || !accepted || p.Project != mirror || p.Kind != client.KindMirror || p.State != client.ProjectCloning ||
		p.Upstream == nil || *p.Upstream != u.URL() || p.Host == nil || *p.Host != client.HostGitHub ||
		p.Credential == nil || *p.Credential != "gh" {
		t.Fatalf("first PUT = %+v accepted %v, %v", p, accepted, err)
	}
	if p = waitReady(t, c, mirror); p.State != client.ProjectReady || p.FetchedAt == nil || p.LastError != nil {
		t.Fatalf("mirror after the clone = %+v", p)
	}
	p, accepted, err = c.PutMirror(ctx, mirror, req)
	if err != nil || accepted || p.State != client.ProjectReady || p.FetchedAt == nil {
		t.Fatalf("repeat PUT = %+v accepted %v, %v", p, accepted, err)
	}
	if _, _, err := c.PutMirror(ctx, project, req); !errors.Is(err, client.CodeProjectConflict) {
		t.Fatalf("mirror over the local project: %v", err)
	}

	_, err = c.GetProject(ctx, "group/none")
	var apiErr *client.Error
	if !errors.Is(err, client.CodeProjectNotFound) || !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Fatalf("get of no project: %v", err)
	}

	page, err := c.ListProjects(ctx, client.ProjectListOptions{Limit: 1})
	if err != nil || len(page.Projects) != 1 || page.Projects[0].Project != project || page.NextCursor == nil {
		t.Fatalf("first page = %+v, %v", page, err)
	}
	page, err = c.ListProjects(ctx, client.ProjectListOptions{Limit: 1, Cursor: *page.NextCursor})
	if err != nil || len(page.Projects) != 1 || page.Projects[0].Project != mirror || page.NextCursor != nil {
		t.Fatalf("second page = %+v, %v", page, err)
	}
	var names []string
	for p, err := range c.AllProjects(ctx, client.ProjectListOptions{Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if p.Kind == client.KindLocal && (p.Upstream != nil || p.Host != nil || p.Credential != nil || p.State != client.ProjectReady) {
			t.Fatalf("local project = %+v", p)
		}
		names = append(names, p.Project+":"+p.Kind)
	}
	if strings.Join(names, ",") != "group/app:local,mirrors/gh:mirror" {
		t.Fatalf("projects over pages: %v", names)
	}

	if err := c.DeleteProject(ctx, project); !errors.Is(err, client.CodeProjectConflict) || !errors.As(err, &apiErr) || apiErr.Status != 409 {
		t.Fatalf("delete of the local project: %v", err)
	}
	if _, err := c.GetProject(ctx, project); err != nil {
		t.Fatalf("the local project after a refused delete: %v", err)
	}
	if err := c.DeleteProject(ctx, mirror); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetProject(ctx, mirror); !errors.Is(err, client.CodeProjectNotFound) {
		t.Fatalf("get after delete: %v", err)
	}
}

// TestUpstreamErrorsAgainstServer pins on a mirror whose upstream refuses
// the credential (upstream_rejected, never retried) and then is gone
// (upstream_unavailable, retried with the server's Retry-After capped by
// MaxDelay).
func TestUpstreamErrorsAgainstServer(t *testing.T) {
	u := testdata.StartUpstream(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "", "--repos", t.TempDir(), "--redis", r.URL(),
		"--credentials", writeCredentials(t, u, testdata.UpstreamPassword), "--upstream-timeout", "30s",
		"--upstream-allow", testdata.LoopbackUpstreams)
	ctx := t.Context()
	var events []client.RetryEvent
	const maxDelay = 200 * time.Millisecond
	c := newClient(t, srv.Base, apiToken, client.Options{BaseDelay: time.Millisecond, MaxDelay: maxDelay, MaxAttempts: 3,
		OnRetry: func(e client.RetryEvent) { events = append(events, e) }})
	const mirror = "mirrors/gh"
	if _, _, err := c.PutMirror(ctx, mirror, client.MirrorRequest{Upstream: u.URL(), Host: client.HostGitHub, Credential: "gh"}); err != nil {
		t.Fatal(err)
	}
	if p := waitReady(t, c, mirror); p.State != client.ProjectReady {
		t.Fatalf("mirror = %+v", p)
	}
	byMR := client.PinRequest{MergeRequestIID: iid(testdata.UpstreamMergeRequest)}
	if pin, _, err := c.Pin(ctx, mirror, 1, byMR); err != nil || pin.SHA != u.Merge {
		t.Fatalf("pin with the upstream up = %+v, %v", pin, err)
	}

	// The password is rotated upstream but not in the credentials file.
	u.SetPassword("rotated")
	events = nil
	_, _, err := c.Pin(ctx, mirror, 2, byMR)
	var apiErr *client.Error
	if !errors.Is(err, client.CodeUpstreamRejected) || !errors.As(err, &apiErr) || apiErr.Status != 502 || len(events) != 0 {
		t.Fatalf("pin with a refused credential: %v, retries %+v", err, events)
	}
	if strings.Contains(err.Error(), testdata.UpstreamPassword) {
		t.Errorf("the error shows the password: %v", err)
	}

	// The refusal is paced (the upstream is not asked again for a while);
	// a PUT of the mirror ends the pace.
	if _, _, err := c.PutMirror(ctx, mirror, client.MirrorRequest{Upstream: u.URL(), Host: client.HostGitHub, Credential: "gh"}); err != nil {
		t.Fatal(err)
	}

	// The upstream is gone: every attempt is a 503 whose Retry-After (5s)
	// is above MaxDelay, so each pause is MaxDelay.
	u.Stop()
	events = nil
	_, _, err = c.Pin(ctx, mirror, 3, byMR)
	if !errors.Is(err, client.CodeUpstreamUnavailable) || !errors.As(err, &apiErr) || apiErr.Status != 503 || apiErr.RetryAfter <= maxDelay {
		t.Fatalf("pin with the upstream stopped: %v", err)
	}
	if len(events) != 2 {
		t.Fatalf("retries = %+v, want 2 (MaxAttempts 3)", events)
	}
	for _, e := range events {
		if !errors.Is(e.Err, client.CodeUpstreamUnavailable) || e.Delay != maxDelay {
			t.Errorf("retry %+v, want upstream_unavailable paused by MaxDelay %v", e, maxDelay)
		}
	}
}

// TestRateLimitedAgainstServer meets the server's real token rate limit
// (one request per five seconds, a burst of one): a client without retries
// sees rate_limited with Retry-After 1s; a retrying one pauses at least
// that long each time and gets through once the bucket refills.
func TestRateLimitedAgainstServer(t *testing.T) {
	root := t.TempDir()
	testdata.NewMergeRequestProject(t, root)
	r := testdata.StartRedis(t)
	srv := startServer(t, "", "--repos", root, "--redis", r.URL(), "--rate-limit-token", "0.2")
	ctx := t.Context()
	once := newClient(t, srv.Base, apiToken, client.Options{MaxAttempts: 1})
	if _, err := once.GetProject(ctx, project); err != nil {
		t.Fatal(err)
	}
	_, err := once.GetProject(ctx, project)
	var apiErr *client.Error
	if !errors.Is(err, client.CodeRateLimited) || !errors.As(err, &apiErr) || apiErr.Status != 429 || apiErr.RetryAfter != time.Second {
		t.Fatalf("second request within the limit's period: %v", err)
	}

	var events []client.RetryEvent
	const maxDelay = 1500 * time.Millisecond
	c := newClient(t, srv.Base, apiToken, client.Options{BaseDelay: time.Millisecond, MaxDelay: maxDelay, MaxAttempts: 20,
		OnRetry: func(e client.RetryEvent) { events = append(events, e) }})
	if p, err := c.GetProject(ctx, project); err != nil || p.Project != project {
		t.Fatalf("retried get = %+v, %v", p, err)
	}
	if len(events) == 0 {
		t.Fatal("the retrying client was never limited")
	}
	for _, e := range events {
		if !errors.Is(e.Err, client.CodeRateLimited) || e.Delay < time.Second || e.Delay > maxDelay {
			t.Errorf("retry %+v, want rate_limited paused 1s to %v", e, maxDelay)
		}
	}
}

package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/client"
	"github.com/refkeeper/refkeeper/testdata"
)

const project = "group/app"

func newClient(tb testing.TB, base, token string, opts client.Options) *client.Client {
	tb.Helper()
	opts.BaseURL, opts.Token = base, token
	c, err := client.New(opts)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func iid(n int64) *int64 { return &n }

// TestPinsAgainstServer drives every pin endpoint of the server through the
// client: pin by SHA and by merge request, conflict, get, finish, list with
// pagination, close, GC, delete, and the typed errors.
func TestPinsAgainstServer(t *testing.T) {
	root := t.TempDir()
	g := testdata.NewMergeRequestProject(t, root)
	r := testdata.StartRedis(t)
	srv := startServer(t, "", "--repos", root, "--redis", r.URL(), "--retention", "1h")
	ctx := t.Context()
	var retries []client.RetryEvent
	c := newClient(t, srv.Base, apiToken, client.Options{OnRetry: func(e client.RetryEvent) { retries = append(retries, e) }})

	pin, created, err := c.Pin(ctx, project, 7, client.PinRequest{SHA: g.First})
	if err != nil || !created || pin.SHA != g.First || pin.State != client.StatePinned ||
		pin.Refspec != "+refs/pipelines/7:refs/pipelines/7" || pin.FetchToken == nil || pin.MergeRequestIID != nil ||
		pin.FinishedAt != nil || pin.CreatedAt.IsZero() {
		t.Fatalf("pin = %+v, created %v, %v", pin, created, err)
	}
	if _, created, err := c.Pin(ctx, project, 7, client.PinRequest{SHA: g.First}); err != nil || created {
		t.Fatalf("re-pin: created %v, %v", created, err)
	}
	_, _, err = c.Pin(ctx, project, 7, client.PinRequest{SHA: g.Second})
	var apiErr *client.Error
	if !errors.Is(err, client.CodeRefConflict) || !errors.As(err, &apiErr) || apiErr.Status != 409 || apiErr.Message == "" {
		t.Fatalf("conflicting pin: %v", err)
	}
	if errors.Is(err, client.CodePinNotFound) {
		t.Fatal("a ref_conflict also matches pin_not_found")
	}

	byMR, created, err := c.Pin(ctx, project, 8, client.PinRequest{MergeRequestIID: iid(testdata.MergeRequestIID)})
	if err != nil || !created || byMR.SHA != g.Merge || byMR.MergeRequestIID == nil || *byMR.MergeRequestIID != testdata.MergeRequestIID {
		t.Fatalf("pin by merge request = %+v, %v", byMR, err)
	}
	if sha, ok := g.RefSHA(t, "refs/pipelines/8"); !ok || sha != g.Merge {
		t.Fatalf("refs/pipelines/8 = %s %v", sha, ok)
	}

	// The client's pin carries every field the server sent, with its value.
	var sent map[string]any
	if err := json.Unmarshal(rawGet(t, srv.Base, "/api/v1/projects/group%2Fapp/pipelines/8/ref"), &sent); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetPin(ctx, project, 8)
	if err != nil {
		t.Fatal(err)
	}
	reencoded, _ := json.Marshal(got)
	var mine map[string]any
	_ = json.Unmarshal(reencoded, &mine)
	for k, v := range sent {
		if !reflect.DeepEqual(mine[k], v) {
			t.Errorf("field %s: server sent %v, client decoded %v", k, v, mine[k])
		}
	}

	fin, err := c.Finish(ctx, project, 7, "success")
	if err != nil || fin.State != client.StateFinished || fin.FinishedAt == nil || fin.ExpiresAt == nil ||
		fin.ExpiresAt.Sub(*fin.FinishedAt) != time.Hour {
		t.Fatalf("finish = %+v, %v", fin, err)
	}
	again, err := c.Finish(ctx, project, 7, "")
	if err != nil || !again.FinishedAt.Equal(*fin.FinishedAt) {
		t.Fatalf("second finish = %+v, %v", again, err)
	}
	if _, err := c.Finish(ctx, project, 99, ""); !errors.Is(err, client.CodePinNotFound) {
		t.Fatalf("finish of a pipeline never pinned: %v", err)
	}

	for id := int64(20); id < 25; id++ {
		if _, _, err := c.Pin(ctx, project, id, client.PinRequest{SHA: g.Second}); err != nil {
			t.Fatal(err)
		}
	}
	page, err := c.ListPins(ctx, project, client.ListOptions{Limit: 2})
	if err != nil || len(page.Pins) != 2 || page.NextCursor == nil {
		t.Fatalf("first page = %+v, %v", page, err)
	}
	var ids []int64
	for p, err := range c.AllPins(ctx, project, client.ListOptions{Limit: 2}) {
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, p.PipelineID)
	}
	if len(ids) != 7 {
		t.Fatalf("all pins over pages of 2: %v", ids)
	}
	finished, err := c.ListPins(ctx, project, client.ListOptions{State: client.StateFinished})
	if err != nil || len(finished.Pins) != 1 || finished.Pins[0].PipelineID != 7 || finished.NextCursor != nil {
		t.Fatalf("finished pins = %+v, %v", finished, err)
	}
	if _, err := c.ListPins(ctx, project, client.ListOptions{Limit: 1001}); !errors.Is(err, client.CodeInvalidRequest) {
		t.Fatalf("limit 1001: %v", err)
	}

	closed, err := c.CloseMergeRequest(ctx, project, testdata.MergeRequestIID)
	if err != nil || len(closed) != 1 || closed[0].PipelineID != 8 {
		t.Fatalf("close = %+v, %v", closed, err)
	}
	res, err := c.GC(ctx)
	if err != nil || res.Kept == 0 {
		t.Fatalf("gc = %+v, %v", res, err)
	}

	if err := c.DeletePin(ctx, project, 7); err != nil {
		t.Fatal(err)
	}
	if _, ok := g.RefSHA(t, "refs/pipelines/7"); ok {
		t.Fatal("refs/pipelines/7 still there after DeletePin")
	}
	gone, err := c.GetPin(ctx, project, 7)
	if err != nil || gone.State != client.StateDeleted || gone.FetchToken != nil {
		t.Fatalf("deleted pin = %+v, %v", gone, err)
	}
	if err := c.DeletePin(ctx, project, 98); !errors.Is(err, client.CodePinNotFound) {
		t.Fatalf("delete of nothing: %v", err)
	}
	if _, err := c.GetPin(ctx, "no/such", 1); !errors.Is(err, client.CodeProjectNotFound) {
		t.Fatalf("unknown project: %v", err)
	}
	if _, err := c.GetPin(ctx, "../etc", 1); !errors.Is(err, client.CodeInvalidRequest) {
		t.Fatalf("bad project name: %v", err)
	}
	if _, err := c.GetPin(ctx, project, 0); !errors.Is(err, client.CodeInvalidRequest) {
		t.Fatalf("pipeline 0: %v", err)
	}
	wrong := newClient(t, srv.Base, "not-the-token-0123456789", client.Options{})
	if _, err := wrong.GetPin(ctx, project, 8); !errors.Is(err, client.CodeUnauthorized) {
		t.Fatalf("wrong token: %v", err)
	}
	if err := c.Healthz(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Readyz(ctx); err != nil {
		t.Fatal(err)
	}
	if len(retries) != 0 {
		t.Fatalf("retries against a healthy server: %+v", retries)
	}
}

// TestRetryRedisOutage: with Redis stopped the server answers 503 with
// Retry-After; the client retries, tells its observer, and once Redis is
// back (restarted from the observer, on the first retry) the same call
// succeeds.
func TestRetryRedisOutage(t *testing.T) {
	root := t.TempDir()
	g := testdata.NewMergeRequestProject(t, root)
	r := testdata.StartRedis(t)
	srv := startServer(t, "", "--repos", root, "--redis", r.URL())
	r.Stop(t)

	probe := newClient(t, srv.Base, apiToken, client.Options{})
	var apiErr *client.Error
	if err := probe.Readyz(t.Context()); !errors.As(err, &apiErr) || apiErr.Status != 503 {
		t.Fatalf("readyz with Redis down: %v", err)
	}

	var events []client.RetryEvent
	c := newClient(t, srv.Base, apiToken, client.Options{
		MaxAttempts: 50, BaseDelay: 10 * time.Millisecond, MaxDelay: 200 * time.Millisecond,
		OnRetry: func(e client.RetryEvent) {
			if len(events) == 0 {
				r.Start(t)
			}
			events = append(events, e)
		},
	})
	pin, created, err := c.Pin(t.Context(), project, 9, client.PinRequest{SHA: g.First})
	if err != nil || !created || pin.SHA != g.First {
		t.Fatalf("pin across the outage = %+v, %v (after %d retries)", pin, err, len(events))
	}
	if len(events) == 0 {
		t.Fatal("no retry was observed")
	}
	first := events[0]
	if !errors.As(first.Err, &apiErr) || !errors.Is(first.Err, client.CodeUnavailable) || apiErr.RetryAfter <= 0 ||
		first.Method != "PUT" || first.Attempt != 1 {
		t.Fatalf("first retry = %+v", first)
	}
	for _, e := range events {
		if e.Delay > 200*time.Millisecond {
			t.Fatalf("a pause over MaxDelay: %+v", e)
		}
	}
	t.Logf("%d retries; first: %v, Retry-After %v capped to %v", len(events), first.Err, apiErr.RetryAfter, first.Delay)
}

// TestRetryConnectionRefused: a call to an address where nothing listens
// yet is retried; once the server comes up there (started from the
// observer), it succeeds. With nothing ever listening, the attempts run out
// and the connection error is what the caller sees.
func TestRetryConnectionRefused(t *testing.T) {
	root := t.TempDir()
	testdata.NewMergeRequestProject(t, root)
	r := testdata.StartRedis(t)
	addr := testdata.FreeAddr(t)

	var events []client.RetryEvent
	c := newClient(t, "http://"+addr, apiToken, client.Options{
		MaxAttempts: 20, BaseDelay: 10 * time.Millisecond, MaxDelay: 100 * time.Millisecond,
		OnRetry: func(e client.RetryEvent) {
			if len(events) == 0 {
				startServer(t, addr, "--repos", root, "--redis", r.URL())
			}
			events = append(events, e)
		},
	})
	res, err := c.GC(t.Context())
	if err != nil || res == nil {
		t.Fatalf("gc after the server came up: %+v, %v", res, err)
	}
	var connErr *client.ConnectionError
	if len(events) == 0 || !errors.As(events[0].Err, &connErr) || !connErr.Retryable {
		t.Fatalf("retries = %+v", events)
	}

	nobody := newClient(t, "http://"+testdata.FreeAddr(t), apiToken, client.Options{MaxAttempts: 3, BaseDelay: time.Millisecond, MaxDelay: 5 * time.Millisecond})
	_, err = nobody.GC(t.Context())
	var exhausted *client.ExhaustedError
	if !errors.As(err, &exhausted) || exhausted.Attempts != 3 || !errors.As(err, &connErr) {
		t.Fatalf("nothing listening: %v", err)
	}
}

// TestNoRetryOfPermanentFailures: a 4xx is answered at once, never sent
// again, and a cancelled context ends a call that waits to retry.
func TestNoRetryOfPermanentFailures(t *testing.T) {
	root := t.TempDir()
	g := testdata.NewMergeRequestProject(t, root)
	r := testdata.StartRedis(t)
	srv := startServer(t, "", "--repos", root, "--redis", r.URL())
	var events []client.RetryEvent
	c := newClient(t, srv.Base, apiToken, client.Options{OnRetry: func(e client.RetryEvent) { events = append(events, e) }})
	ctx := t.Context()
	if _, _, err := c.Pin(ctx, project, 1, client.PinRequest{SHA: g.First}); err != nil {
		t.Fatal(err)
	}
	for name, call := range map[string]func() error{
		"ref_conflict": func() error { _, _, err := c.Pin(ctx, project, 1, client.PinRequest{SHA: g.Second}); return err },
		"commit_not_found": func() error {
			_, _, err := c.Pin(ctx, project, 2, client.PinRequest{SHA: "0123456789012345678901234567890123456789"})
			return err
		},
		"invalid_request":   func() error { _, _, err := c.Pin(ctx, project, 2, client.PinRequest{}); return err },
		"project_not_found": func() error { _, err := c.Finish(ctx, "nope/nope", 1, ""); return err },
	} {
		if err := call(); !errors.Is(err, client.Code(name)) {
			t.Errorf("%s: %v", name, err)
		}
	}
	if len(events) != 0 {
		t.Fatalf("permanent failures were retried: %+v", events)
	}

	r.Stop(t)
	cctx, cancel := context.WithCancel(ctx)
	slow := newClient(t, srv.Base, apiToken, client.Options{BaseDelay: time.Hour, MaxDelay: time.Hour,
		OnRetry: func(client.RetryEvent) { cancel() }})
	_, _, err := slow.Pin(cctx, project, 3, client.PinRequest{SHA: g.First})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, client.CodeUnavailable) {
		t.Fatalf("cancelled while waiting to retry: %v", err)
	}
}

// TestComputedMergeAgainstServer: pins of a merge the service computes,
// their merge object, the same inputs again, a conflict with its paths, and
// a ref that does not exist.
func TestComputedMergeAgainstServer(t *testing.T) {
	root := t.TempDir()
	g := testdata.NewMergeRequestProject(t, root)
	r := testdata.StartRedis(t)
	srv := startServer(t, "", "--repos", root, "--redis", r.URL())
	c := newClient(t, srv.Base, apiToken, client.Options{})
	ctx := t.Context()
	feature, _ := g.RefSHA(t, "refs/heads/feature")

	pin, created, err := c.Pin(ctx, project, 7, client.PinRequest{MergeRequestIID: iid(12),
		Merge: &client.MergeRequest{Source: "feature", Target: "main", Mode: client.ModeMerge}})
	if err != nil || !created || pin.Merge == nil || pin.Merge.SourceSHA != feature || pin.Merge.TargetSHA != g.Second ||
		pin.Merge.Mode != client.ModeMerge || pin.MergeRequestIID == nil || *pin.MergeRequestIID != 12 {
		t.Fatalf("pin of a computed merge = %+v, %v", pin, err)
	}
	// parents [target, source], as the git CLI sees the commit.
	if parents := g.Git(t, "rev-list", "--parents", "-n1", pin.SHA); parents != pin.SHA+" "+g.Second+" "+feature {
		t.Fatalf("parents of the merge: %q", parents)
	}
	again, created, err := c.Pin(ctx, project, 7, client.PinRequest{Merge: &client.MergeRequest{Source: feature, Target: "refs/heads/main"}})
	if err != nil || created || again.SHA != pin.SHA {
		t.Fatalf("same inputs again = %+v created %v, %v", again, created, err)
	}
	squash, _, err := c.Pin(ctx, project, 8, client.PinRequest{Merge: &client.MergeRequest{Source: "feature", Target: "main", Mode: client.ModeSquash}})
	if err != nil || squash.Merge == nil || squash.Merge.Mode != client.ModeSquash {
		t.Fatalf("squash = %+v, %v", squash, err)
	}
	if parents := g.Git(t, "rev-list", "--parents", "-n1", squash.SHA); parents != squash.SHA+" "+g.Second {
		t.Fatalf("parents of the squash: %q", parents)
	}

	// The client's pin carries every field the server sent, merge included.
	var sent, mine map[string]any
	if err := json.Unmarshal(rawGet(t, srv.Base, "/api/v1/projects/group%2Fapp/pipelines/7/ref"), &sent); err != nil {
		t.Fatal(err)
	}
	got, err := c.GetPin(ctx, project, 7)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := json.Marshal(got)
	_ = json.Unmarshal(raw, &mine)
	if sent["merge"] == nil || !reflect.DeepEqual(sent, mine) {
		t.Fatalf("server sent %v\nclient decoded %v", sent, mine)
	}

	g.Commit(t, "main", map[string]string{"feature.txt": "conflicting\n"}, "conflicting")
	_, _, err = c.Pin(ctx, project, 9, client.PinRequest{Merge: &client.MergeRequest{Source: "feature", Target: "main"}})
	var apiErr *client.Error
	if !errors.Is(err, client.CodeMergeConflict) || !errors.As(err, &apiErr) || apiErr.Status != 409 ||
		!reflect.DeepEqual(apiErr.Conflicts, []string{"feature.txt"}) {
		t.Fatalf("merge conflict: %v", err)
	}
	if _, _, err := c.Pin(ctx, project, 10, client.PinRequest{Merge: &client.MergeRequest{Source: "nope", Target: "main"}}); !errors.Is(err, client.CodeRefNotFound) {
		t.Fatalf("a source that does not exist: %v", err)
	}
	if _, ok := g.RefSHA(t, "refs/pipelines/9"); ok {
		t.Fatal("a conflicting merge wrote a ref")
	}
}

package systest

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// registerFailingMirror registers the mirror at api on one replica and
// waits until the other sees its clone fail (its credential is wrong).
func registerFailingMirror(t *testing.T, on, other *server, api, register string) {
	t.Helper()
	if code, pj := on.call(t, "PUT", api, register); code != 202 {
		t.Fatalf("register = %d %v, want 202", code, pj)
	}
	var pj map[string]any
	testdata.WaitFor(t, "the clone to fail", 30*time.Second, func() bool {
		_, pj = other.call(t, "GET", api, "")
		return pj["state"] != "cloning"
	})
	if pj["state"] != "failed" {
		t.Fatalf("mirror with a wrong password = %v, want failed", pj)
	}
}

// TestMirrorLifecycleAcrossReplicas runs two replicas of `serve --role all`
// on one repos root and one Redis: a mirror whose clone failed is cloned
// by a pin on the other replica once its credential is right; pins on one
// replica racing a DELETE on the other leave no record, so the mirror
// registered again under that name starts with no pins.
func TestMirrorLifecycleAcrossReplicas(t *testing.T) {
	root := t.TempDir()
	u := testdata.StartUpstream(t)
	r := testdata.StartRedis(t)
	creds := filepath.Join(t.TempDir(), "credentials.json")
	writeCreds := func(password string) {
		t.Helper()
		tmp := creds + ".tmp"
		if err := os.WriteFile(tmp, u.CredentialsJSON("gh", password), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, creds); err != nil {
			t.Fatal(err)
		}
	}
	writeCreds("wrong-password")
	args := []string{"--role", "all", "--repos", root, "--redis", r.URL(), "--credentials", creds,
		"--upstream-allow", testdata.LoopbackUpstreams, "--upstream-timeout", "30s"}
	a, b := startServer(t, args...), startServer(t, args...)
	const api = "/api/v1/projects/mirrors%2Fgh"
	register := fmt.Sprintf(`{"upstream": %q, "host": "github", "credential": "gh"}`, u.URL())

	registerFailingMirror(t, a, b, api, register)
	code, pin := b.call(t, "PUT", api+"/pipelines/1/ref", `{"sha": "`+u.First+`"}`)
	t.Logf("pin on the failed mirror, credential still wrong: %d %v", code, pin)
	if code != 502 {
		t.Errorf("pin on a failed mirror, credential still wrong = %d %v, want 502", code, pin)
	}
	writeCreds(testdata.UpstreamPassword)
	testdata.WaitFor(t, "the pin that clones", 30*time.Second, func() bool {
		code, pin = b.call(t, "PUT", api+"/pipelines/1/ref", `{"sha": "`+u.First+`"}`)
		return code != 502 // until the replica has read the file again
	})
	t.Logf("pin on the failed mirror, credential right: %d %v", code, pin)
	if code != 201 || pin["sha"] != u.First {
		t.Fatalf("pin on a failed mirror whose credential is right = %d %v, want 201", code, pin)
	}
	if _, pj := a.call(t, "GET", api, ""); pj["state"] != "ready" {
		t.Errorf("after the pin's clone, the other replica sees %v, want ready", pj)
	}

	// Pins on a, without pause, over a few pipelines; DELETE on b.
	var stop atomic.Bool
	var pinned atomic.Int64
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load(); n++ {
				code, _ := a.call(t, "PUT", fmt.Sprintf("%s/pipelines/%d/ref", api, 10+g*4+n%4), `{"sha": "`+u.First+`"}`)
				if code == 200 || code == 201 {
					pinned.Add(1)
				}
			}
		}()
	}
	testdata.WaitFor(t, "pins to flow", 30*time.Second, func() bool { return pinned.Load() >= 20 })
	t.Logf("pins flowing")
	if code, _ := b.call(t, "DELETE", api, ""); code != 204 {
		t.Fatalf("DELETE = %d", code)
	}
	time.Sleep(50 * time.Millisecond)
	stop.Store(true)
	wg.Wait()

	t.Logf("deleted")
	// The name is free again, and the new mirror has no pins of the old.
	if code, pj := a.call(t, "PUT", api, register); code != 202 {
		var files []string
		filepath.Walk(filepath.Join(root, "mirrors"), func(p string, _ os.FileInfo, _ error) error { files = append(files, p); return nil })
		t.Fatalf("register again = %d %v, want 202; left: %v", code, pj, files)
	}
	var pj map[string]any
	testdata.WaitFor(t, "the second clone", 30*time.Second, func() bool {
		_, pj = b.call(t, "GET", api, "")
		return pj["state"] != "cloning"
	})
	t.Logf("registered again: %v", pj)
	if pj["state"] != "ready" {
		t.Fatalf("mirror registered again = %v, want ready", pj)
	}
	for _, state := range []string{"pinned", "finished", "deleted"} {
		code, list := b.call(t, "GET", api+"/pipelines?state="+state, "")
		if pins, _ := list["pins"].([]any); code != 200 || len(pins) != 0 {
			t.Errorf("%s pins of the mirror registered again: %d %v, want none", state, code, list)
		}
	}
}

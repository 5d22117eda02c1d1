package api_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/api"
	"github.com/refkeeper/refkeeper/mirrors"
	"github.com/refkeeper/refkeeper/testdata"
)

// writeCredentialsWithOther writes the file with the mirror's entry
// ("upstream", password) and another credential "other" with otherPassword.
func writeCredentialsWithOther(t *testing.T, path string, u *testdata.Upstream, password, otherPassword string) {
	t.Helper()
	var m map[string]map[string]any
	if err := json.Unmarshal(u.CredentialsJSON("upstream", password), &m); err != nil {
		t.Fatal(err)
	}
	m["other"] = map[string]any{"username": "someone", "password": otherPassword, "hosts": []string{"other.example.com"}}
	body, _ := json.Marshal(m)
	if err := os.WriteFile(path+".tmp", body, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

// A failed mirror's retry pace starts over only when its own credential
// entry changed: touching the credentials file, writing the same content
// again or rotating another credential in it lets no pin within the step
// send the refused credential again; the mirror's own entry fixed does.
// The record keeps a keyed digest of the entry, never the password nor an
// unkeyed hash of it, and the key is the owner's alone.
func TestMirrorPaceRestartsOnlyWhenItsOwnCredentialChanged(t *testing.T) {
	f := newMirrorFixture(t, time.Minute, func(c *api.Config) { c.Projects.(*mirrors.Projects).RetryStep = time.Hour })
	writeCredentialsWithOther(t, f.creds, f.upstream, "wrong-password", "other-0")
	f.failedMirror(t, "gitlab")
	if a := f.mirrorPin(t, 1, `{"sha": "`+f.upstream.First+`"}`); a.status != http.StatusBadGateway {
		t.Fatalf("first pin: %d %s, want 502", a.status, a.raw)
	}
	before := f.upstream.Refused()
	tries, other := 0, "other-0"
	for i := range 10 {
		switch i % 3 {
		case 0: // a touch
			now := time.Now().Add(time.Duration(i+1) * time.Second)
			if err := os.Chtimes(f.creds, now, now); err != nil {
				t.Fatal(err)
			}
		case 1: // the same content written again
			writeCredentialsWithOther(t, f.creds, f.upstream, "wrong-password", other)
		case 2: // another credential rotated
			other = "other-" + strconv.Itoa(i)
			writeCredentialsWithOther(t, f.creds, f.upstream, "wrong-password", other)
		}
		now := time.Now().Add(time.Duration(i+1) * time.Second)
		if err := os.Chtimes(f.creds, now, now); err != nil {
			t.Fatal(err)
		}
		r0 := f.upstream.Refused()
		a := f.mirrorPin(t, 10+i, `{"sha": "`+f.upstream.First+`"}`)
		if f.upstream.Refused() > r0 {
			tries++
		}
		if a.status != http.StatusBadGateway || a.header.Get("Retry-After") == "" {
			t.Errorf("pin %d after the file was written (this entry unchanged): %d Retry-After %q %s, want 502 from the record", i, a.status, a.header.Get("Retry-After"), a.raw)
		}
	}
	t.Logf("10 pins, each after a touch, a rewrite or another credential's rotation: %d tried the clone again, the upstream refused %d requests", tries, f.upstream.Refused()-before)
	if tries > 0 {
		t.Errorf("writes of the credentials file that left this mirror's entry as it was let %d of 10 pins within the step send the refused credential again", tries)
	}
	record := mirrorRecord(t, f)
	sum := sha256.Sum256([]byte("wrong-password"))
	if strings.Contains(record, "wrong-password") || strings.Contains(record, hex.EncodeToString(sum[:])) || !strings.Contains(record, "refkeeper.credentialdigest ") {
		t.Errorf("record holds the credential or an unkeyed hash of it, or no digest:\n%s", record)
	}
	st, err := os.Stat(filepath.Join(f.root, ".mirrors", ".credential-digest-key"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("digest key file: %v %v, want mode 0600", st, err)
	}
	// The mirror's own entry fixed: the next pin tries at once.
	writeCredentialsWithOther(t, f.creds, f.upstream, testdata.UpstreamPassword, other)
	later := time.Now().Add(time.Minute)
	if err := os.Chtimes(f.creds, later, later); err != nil {
		t.Fatal(err)
	}
	if a := f.mirrorPin(t, 100, `{"sha": "`+f.upstream.First+`"}`); a.status != http.StatusCreated {
		t.Errorf("pin after this mirror's credential was fixed: %d %s, want 201", a.status, a.raw)
	}
}

// A clone that waits its whole clone timeout for the staged repository's
// lock (LockStagedFetch), held by a clone that does not end (here the test
// holds the flock, as a hung replica would), never asked the upstream: it
// is a stop of the service's own, answered 503 unavailable with the
// default Retry-After, counted as no attempt (the pin once the lock is free
// clones at once), and last_error says why.
func TestMirrorCloneLockHeldElsewhereIsNoUpstreamAttempt(t *testing.T) {
	f := newMirrorFixture(t, time.Minute, func(c *api.Config) {
		p := c.Projects.(*mirrors.Projects)
		p.CloneTimeout = 2 * time.Second
		p.RetryStep = time.Hour
	})
	sum := sha256.Sum256([]byte("mirrors/gh"))
	dir := filepath.Join(f.root, ".mirrors", ".locks")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, hex.EncodeToString(sum[:16])+".clone"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	requests := f.upstream.Fetches() + f.upstream.Refused()
	if a := f.register(t, "gitlab"); a.status != http.StatusAccepted {
		t.Fatalf("PUT: %d %s", a.status, a.raw)
	}
	got := f.awaitState(t, mirrorPath)
	t.Logf("clone while another holds the clone lock: %s", got.raw)
	if le, _ := got.body["last_error"].(string); got.body["state"] != "failed" || !strings.Contains(le, "did not stop within") {
		t.Errorf("clone that never got the lock: state %v last_error %q, want failed saying an earlier clone did not stop", got.body["state"], le)
	}
	a := f.mirrorPin(t, 1, `{"sha": "`+f.upstream.First+`"}`)
	t.Logf("pin's retry while the lock is held: %d Retry-After %q %s", a.status, a.header.Get("Retry-After"), a.raw)
	if a.status != http.StatusServiceUnavailable || a.errCode() != "unavailable" {
		t.Errorf("pin's retry while the lock is held: %d %s, want 503 unavailable", a.status, a.errCode())
	}
	if ra, err := strconv.Atoi(a.header.Get("Retry-After")); err != nil || ra < 1 || ra >= 3600 {
		t.Errorf("pin's retry while the lock is held: Retry-After %q, want the default (not the pace's hour)", a.header.Get("Retry-After"))
	}
	_ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	a = f.mirrorPin(t, 2, `{"sha": "`+f.upstream.First+`"}`)
	t.Logf("pin once the lock is free: %d %s; upstream requests before it %d; record:\n%s",
		a.status, a.raw, f.upstream.Fetches()+f.upstream.Refused()-requests, mirrorRecord(t, f))
	if a.status != http.StatusCreated {
		t.Errorf("pin once the lock is free: %d %s, want 201 (the failed clones never asked the upstream: no attempt to pace)", a.status, a.errCode())
	}
}

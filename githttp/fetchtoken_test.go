package githttp

import (
	"encoding/base64"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/refs"
)

// TestDeletedIncarnationTokenAfterAdoption: a token of a pipeline's earlier,
// deleted pin does not open the later pin of that pipeline, not even after
// Redis lost the later pin's record and its ref was adopted back; the later
// pin's own token still does.
func TestDeletedIncarnationTokenAfterAdoption(t *testing.T) {
	f := newFixture(t, "")
	ctx := t.Context()
	svc := f.pins.Service
	pin1, _, err := svc.Pin(ctx, refs.PinRequest{Project: "group/app", PipelineID: 7, SHA: refs.ObjectID(f.git.First)})
	if err != nil {
		t.Fatal(err)
	}
	old := f.signer.Sign(pin1)
	if err := svc.Delete(ctx, "group/app", 7); err != nil {
		t.Fatal(err)
	}
	time.Sleep(20 * time.Millisecond) // a later creation time
	pin2, created, err := svc.Pin(ctx, refs.PinRequest{Project: "group/app", PipelineID: 7, SHA: refs.ObjectID(f.git.Second)})
	if err != nil || !created {
		t.Fatal(pin2, created, err)
	}
	current := f.signer.Sign(pin2)
	fetch := func(token string) (string, error) {
		work := t.TempDir()
		if out, err := runGit(t, work, "init", "-q", "--bare", "."); err != nil {
			t.Fatal(out)
		}
		url := "http://x:" + token + "@" + strings.TrimPrefix(f.base, "http://") + "/git/group/app.git"
		if out, err := runGit(t, work, "fetch", "--no-tags", url, "+refs/pipelines/7:refs/pipelines/7"); err != nil {
			return out, err
		}
		sha, _ := runGit(t, work, "rev-parse", "refs/pipelines/7")
		return strings.TrimSpace(sha), nil
	}
	if out, err := fetch(old); err == nil {
		t.Fatalf("the deleted pin's token opened the later pin (record intact): %s", out)
	}
	f.pins.Redis.FlushAll(t)
	if got, err := fetch(old); err == nil {
		t.Fatalf("the deleted pin's token (for %s) fetched the adopted later pin's commit %s", f.git.First, got)
	}
	if got, err := fetch(current); err != nil || got != f.git.Second {
		t.Fatalf("the later pin's own token after the loss: %v %s", err, got)
	}
}

// TestTokenWithoutSHA: a token signed before tokens named their commit
// holds for its pin while the pin's record keeps its creation time, and is
// refused by an adopted pin, which cannot tell it from an earlier pin's.
func TestTokenWithoutSHA(t *testing.T) {
	signer, err := NewFetchSigner([][]byte{[]byte("0123456789abcdef")})
	if err != nil {
		t.Fatal(err)
	}
	created := time.UnixMilli(1_700_000_000_000)
	pin := refs.Pin{Project: "group/app", PipelineID: 7, SHA: refs.ObjectID(strings.Repeat("a", 40)), CreatedAt: created, State: refs.StatePinned}
	payload, _ := json.Marshal(map[string]any{"p": "group/app", "i": 7, "c": created.UnixMilli()})
	enc := base64.RawURLEncoding
	legacy := fetchTokenPrefix + enc.EncodeToString(payload) + "." + enc.EncodeToString(signer.mac(signer.keys[0], payload))
	claims, err := signer.Verify(legacy)
	if err != nil {
		t.Fatal(err)
	}
	if !claims.matches(pin) {
		t.Errorf("a token without a commit refused by its own pin")
	}
	adopted := pin
	adopted.Adopted, adopted.CreatedAt = true, created.Add(time.Hour)
	if claims.matches(adopted) {
		t.Errorf("a token without a commit accepted by an adopted pin")
	}
	withSHA, _ := signer.Verify(signer.Sign(pin))
	if !withSHA.matches(adopted) {
		t.Errorf("a token naming the adopted pin's commit refused")
	}
	other := adopted
	other.SHA = refs.ObjectID(strings.Repeat("b", 40))
	if withSHA.matches(other) {
		t.Errorf("a token naming another commit accepted by an adopted pin")
	}
}

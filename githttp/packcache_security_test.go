package githttp

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/refkeeper/refkeeper/pktline"
	"github.com/refkeeper/refkeeper/refs/refstest"
)

// TestPackCacheKeepsScope is the property that the cache (the hook's
// packs and the shared answers of scoped requests) gives a fetch token
// nothing more: over generated upload-pack requests (protocol v0
// and v2; wants, haves, shallows and depths drawn from every commit of
// the project and from none), sent with the fetch tokens of two pins of
// one project, a server with the pack cache answers each request as one
// without it does (the same status, the same objects), after the same
// request was sent first with an API token (which may want anything), with
// the other pin's token and with its own (so it is a hit of the shared
// answers, and runs no git); and no token ever receives an object its
// pinned commit does not reach.
func TestPackCacheKeepsScope(t *testing.T) {
	pins := refstest.New(t)
	reg := prometheus.NewRegistry()
	plain := newFixtureOver(t, pins, "")
	gitBinary, runs := countingGit(t, "0")
	cached := newFixtureOver(t, pins, gitBinary, withCache(openCache(t, reg)))
	g := plain.git
	feature := strings.TrimSpace(g.Git(t, "rev-parse", "refs/heads/feature"))
	commits := []string{g.First, g.Second, feature, g.Merge}
	// Pin A reaches less than pin B: its token must not get B's objects.
	pinned := map[string]string{}
	for i, sha := range []string{g.First, g.Merge} {
		url := plain.pinURL(t, int64(7+i), sha)
		token, _ := tokenOf(url)
		pinned[token] = sha
	}
	reach := map[string]map[string]bool{}
	for token, sha := range pinned {
		reach[token] = map[string]bool{}
		for _, oid := range strings.Fields(g.Git(t, "rev-list", "--objects", "--no-object-names", sha)) {
			reach[token][oid] = true
		}
	}
	tokens := slices.Sorted(func(yield func(string) bool) {
		for tk := range pinned {
			if !yield(tk) {
				return
			}
		}
	})

	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 17))
	some := func(from []string, p float64) []string {
		var out []string
		for _, s := range from {
			if rng.Float64() < p {
				out = append(out, s)
			}
		}
		return out
	}
	const rounds = 40
	served := 0
	for i := range rounds {
		token := tokens[rng.IntN(len(tokens))]
		// Mostly the pinned commit, which the filter lets through, at
		// times with others (refused) or none of it.
		wants := some(commits, 0.1)
		if rng.IntN(10) > 0 {
			wants = append(wants, pinned[token])
		}
		if len(wants) == 0 {
			wants = []string{commits[rng.IntN(len(commits))]}
		}
		unknown := "1111111111111111111111111111111111111111"
		haves := some(append(slices.Clone(commits), unknown), 0.3)
		shallows := some(commits, 0.2)
		depth := rng.IntN(4) // 0: none
		v2 := rng.IntN(2) == 1
		body := uploadPackRequest(v2, wants, haves, shallows, depth)
		desc := fmt.Sprintf("round %d (v2 %v, wants %v, haves %v, shallows %v, depth %d)", i, v2, wants, haves, shallows, depth)

		for _, warm := range []string{apiToken, tokens[0], tokens[1], token} {
			postUploadPack(t, cached.base, warm, v2, body)
		}
		wantStatus, wantObjects := postUploadPack(t, plain.base, token, v2, body)
		runsBefore, _ := backendRuns(t, runs)
		gotStatus, gotObjects := postUploadPack(t, cached.base, token, v2, body)
		// The same token sent it just before: a whole answer is shared.
		if runsAfter, _ := backendRuns(t, runs); gotStatus == http.StatusOK && runsAfter != runsBefore {
			t.Fatalf("%s: a repeated scoped request ran git", desc)
		}
		if gotStatus != wantStatus || !slices.Equal(gotObjects, wantObjects) {
			t.Fatalf("%s: with the cache %d and %d objects %v, without %d and %d objects %v",
				desc, gotStatus, len(gotObjects), gotObjects, wantStatus, len(wantObjects), wantObjects)
		}
		for _, oid := range gotObjects {
			if !reach[token][oid] {
				t.Fatalf("%s: the token of the pin at %s received %s, which it does not reach", desc, pinned[token], oid)
			}
		}
		if len(gotObjects) > 0 {
			served++
		}
	}
	// The v0 advertisement is shared too: each token's (twice: a miss,
	// then a hit) is the one without the cache, its own pin alone.
	for _, token := range tokens {
		want := advertisement(t, plain.base, token)
		for range 2 {
			got := advertisement(t, cached.base, token)
			if !bytes.Equal(got, want) {
				t.Fatalf("the token of the pin at %s: advertisement with the cache %q, without %q", pinned[token], got, want)
			}
		}
		if !bytes.Contains(want, []byte(pinned[token]+" refs/pipelines/")) || bytes.Count(want, []byte(" refs/")) != 1 {
			t.Fatalf("the token of the pin at %s was advertised %q", pinned[token], want)
		}
	}
	got := cacheResults(t, reg)
	t.Logf("%d of %d requests got a pack; cache %v", served, rounds, got)
	if served == 0 || got["hit"] == 0 {
		t.Fatalf("the property was not exercised: %d packs, cache %v", served, got)
	}
}

// uploadPackRequest writes one stateless upload-pack request that ends in
// done, without thin-pack (so the pack indexes alone).
func uploadPackRequest(v2 bool, wants, haves, shallows []string, depth int) []byte {
	var lines []pktline.Packet
	add := func(format string, args ...any) { lines = append(lines, pktline.Line(fmt.Sprintf(format, args...))) }
	if v2 {
		add("command=fetch")
		add("object-format=sha1")
		lines = append(lines, pktline.Packet{Kind: pktline.Delim})
		add("ofs-delta")
		add("no-progress")
		for _, w := range wants {
			add("want %s", w)
		}
	} else {
		for i, w := range wants {
			if i == 0 {
				add("want %s multi_ack_detailed side-band-64k ofs-delta shallow no-progress", w)
			} else {
				add("want %s", w)
			}
		}
	}
	for _, s := range shallows {
		add("shallow %s", s)
	}
	if depth > 0 {
		add("deepen %d", depth)
	}
	if !v2 {
		lines = append(lines, pktline.Packet{Kind: pktline.Flush})
	}
	for _, h := range haves {
		add("have %s", h)
	}
	add("done")
	if v2 {
		lines = append(lines, pktline.Packet{Kind: pktline.Flush})
	}
	b, err := pktline.Encode(lines)
	if err != nil {
		panic(err)
	}
	return b
}

// postUploadPack sends one upload-pack request and answers the status
// and the sorted object IDs of the pack in the answer (none: no pack).
func postUploadPack(t *testing.T, base, token string, v2 bool, body []byte) (int, []string) {
	t.Helper()
	status, raw := postRaw(t, base+"/git/group/app.git", token, v2, body)
	if status != http.StatusOK {
		return status, nil
	}
	pack, _ := sideBand(raw)
	if len(pack) == 0 {
		return status, nil
	}
	oids, err := packObjectIDs(t, pack)
	if err != nil {
		t.Fatalf("the answer's pack does not index: %v", err)
	}
	return status, oids
}

// sideBand splits an upload-pack answer into its pack (side band 1) and
// every other packet but progress and errors (bands 2 and 3), each as
// "kind:quoted data".
func sideBand(raw []byte) (pack []byte, lines []string) {
	r := bytes.NewReader(raw)
	for {
		p, err := pktline.Read(r)
		if err != nil {
			return pack, lines
		}
		switch {
		case p.Kind == pktline.Data && len(p.Data) > 0 && p.Data[0] == 1:
			pack = append(pack, p.Data[1:]...)
		case p.Kind == pktline.Data && len(p.Data) > 0 && (p.Data[0] == 2 || p.Data[0] == 3):
		default:
			lines = append(lines, fmt.Sprintf("%d:%q", p.Kind, p.Data))
		}
	}
}

// packObjectIDs indexes pack with git and answers its object IDs, sorted;
// the error, when git cannot index it, is git's output.
func packObjectIDs(t *testing.T, pack []byte) ([]string, error) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "fetched.pack")
	if err := os.WriteFile(path, pack, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := runGit(t, dir, "index-pack", path); err != nil {
		return nil, errors.New(out)
	}
	out, err := runGit(t, dir, "verify-pack", "-v", strings.TrimSuffix(path, ".pack")+".idx")
	if err != nil {
		t.Fatalf("verify-pack of an indexed pack: %v\n%s", err, out)
	}
	var oids []string
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) > 2 && len(f[0]) == 40 {
			oids = append(oids, f[0])
		}
	}
	slices.Sort(oids)
	return oids, nil
}

// postRaw sends one upload-pack request body to a repository's URL with
// a token and answers the status and the whole answer.
func postRaw(t *testing.T, repoURL, token string, v2 bool, body []byte) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("POST", repoURL+"/git-upload-pack", bytes.NewReader(body))
	req.SetBasicAuth("x", token)
	req.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	if v2 {
		req.Header.Set("Git-Protocol", "version=2")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, raw
}

// advertisement answers a v0 ref advertisement with a token.
func advertisement(t *testing.T, base, token string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", base+"/git/group/app.git/info/refs?service=git-upload-pack", nil)
	req.SetBasicAuth("x", token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("advertisement: %d %s", resp.StatusCode, raw)
	}
	return raw
}

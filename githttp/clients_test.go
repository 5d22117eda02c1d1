package githttp

import (
	"bytes"
	"net/http"
	"strings"
	"testing"

	gogit "github.com/go-git/go-git/v5"
	gogitconfig "github.com/go-git/go-git/v5/config"
	gogitplumbing "github.com/go-git/go-git/v5/plumbing"
	gogithttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	git2go "github.com/libgit2/git2go/v34"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/refkeeper/refkeeper/pktline"
)

// tokenOf answers the fetch token in a pin's URL and the URL without it.
func tokenOf(url string) (token, bare string) {
	rest := strings.TrimPrefix(url, "http://x:")
	token, host, _ := strings.Cut(rest, "@")
	return token, "http://" + host
}

// TestEveryClientFetchesAPin: twice (a miss, then a hit of every shared
// answer), with a pin's fetch token, and the pack cache on, the git CLI
// (protocol v0, v1, v2; by ref and by SHA), go-git (by ref and by SHA: it
// needs allow-tip-sha1-in-want advertised) and libgit2 (by ref) fetch the
// pinned commit; go-git's want of another commit is still refused.
func TestEveryClientFetchesAPin(t *testing.T) {
	reg := prometheus.NewRegistry()
	gitBinary, runs := countingGit(t, "0")
	f := newFixture(t, gitBinary, withCache(openCache(t, reg)))
	url := f.pinURL(t, 7, f.git.Second)
	// Twice: the first round fills the cache, the second is served from
	// it: every shared request a hit, no v0 or v1 request (libgit2,
	// go-git, the CLI's) runs git.
	for round := range 2 {
		before, v0Before := cacheResults(t, reg), v0Runs(t, runs)
		everyClient(t, f, url)
		after, v0After := cacheResults(t, reg), v0Runs(t, runs)
		if round == 1 && (after["miss"] != before["miss"] || after["hit"] == before["hit"] || v0After != v0Before) {
			t.Fatalf("the second round: cache results %v after %v, %d v0 and v1 requests ran git; want hits alone", after, before, v0After-v0Before)
		}
	}
}

// everyClient fetches the pin with every client.
func everyClient(t *testing.T, f *fixture, url string) {
	token, bare := tokenOf(url)
	for _, proto := range []string{"0", "1", "2"} {
		fetchPin(t, url, proto, "+refs/pipelines/7:refs/pipelines/7", f.git.Second)
		fetchPin(t, url, proto, f.git.Second, f.git.Second)
	}

	goGit := func(spec string, depth int) error {
		repo, err := gogit.PlainInit(t.TempDir(), true)
		if err != nil {
			t.Fatal(err)
		}
		remote, err := repo.CreateRemoteAnonymous(&gogitconfig.RemoteConfig{Name: "anonymous", URLs: []string{bare}})
		if err != nil {
			t.Fatal(err)
		}
		err = remote.Fetch(&gogit.FetchOptions{RefSpecs: []gogitconfig.RefSpec{gogitconfig.RefSpec(spec)}, Depth: depth,
			Auth: &gogithttp.BasicAuth{Username: "x", Password: token}, Tags: gogit.NoTags})
		if err != nil {
			return err
		}
		if _, err := repo.CommitObject(gogitplumbing.NewHash(f.git.Second)); err != nil {
			t.Fatalf("go-git fetched %s but has no pinned commit: %v", spec, err)
		}
		return nil
	}
	for _, depth := range []int{0, 1} {
		if err := goGit("+refs/pipelines/7:refs/pipelines/7", depth); err != nil {
			t.Errorf("go-git by ref, depth %d: %v", depth, err)
		}
		if err := goGit(f.git.Second+":refs/heads/pinned", depth); err != nil {
			t.Errorf("go-git by SHA, depth %d: %v", depth, err)
		}
	}
	if err := goGit(f.git.First+":refs/heads/other", 0); err == nil {
		t.Errorf("go-git fetched %s, a commit the token does not open", f.git.First)
	}

	repo, err := git2go.InitRepository(t.TempDir(), true)
	if err != nil {
		t.Fatal(err)
	}
	defer repo.Free()
	remote, err := repo.Remotes.CreateAnonymous(bare)
	if err != nil {
		t.Fatal(err)
	}
	defer remote.Free()
	opts := &git2go.FetchOptions{RemoteCallbacks: git2go.RemoteCallbacks{
		CredentialsCallback: func(string, string, git2go.CredentialType) (*git2go.Credential, error) {
			return git2go.NewCredentialUserpassPlaintext("x", token)
		}}, DownloadTags: git2go.DownloadTagsNone}
	if err := remote.Fetch([]string{"+refs/pipelines/7:refs/pipelines/7"}, opts, ""); err != nil {
		t.Fatalf("libgit2 by ref: %v", err)
	}
	ref, err := repo.References.Lookup("refs/pipelines/7")
	if err != nil || ref.Target().String() != f.git.Second {
		t.Fatalf("libgit2 fetched refs/pipelines/7 as %v (%v), want %s", ref, err, f.git.Second)
	}
	if _, err := repo.LookupCommit(ref.Target()); err != nil {
		t.Fatalf("libgit2 has no pinned commit: %v", err)
	}
}

// TestWantRefOfThePin: a protocol v2 `want-ref refs/pipelines/N` (what
// clients speaking ref-in-want send) gets the pack and the wanted-refs
// section naming the pinned SHA, also in a shallow fetch, where the
// section comes after shallow-info; a want-ref of another ref is refused.
// Repeated, the same answers come from the cache, with no git run.
func TestWantRefOfThePin(t *testing.T) {
	gitBinary, runs := countingGit(t, "0")
	f := newFixture(t, gitBinary, withCache(openCache(t, prometheus.NewRegistry())))
	wantRefOfThePin(t, f) // misses
	before, _ := backendRuns(t, runs)
	wantRefOfThePin(t, f) // hits: the answers, wanted-refs and all, are kept
	if after, _ := backendRuns(t, runs); after != before {
		t.Fatalf("repeated want-ref fetches ran git %d times, want none", after-before)
	}
}

func wantRefOfThePin(t *testing.T, f *fixture) {
	url := f.pinURL(t, 7, f.git.Second)
	token, bare := tokenOf(url)
	post := func(args ...string) (int, []pktline.Packet, []byte) {
		lines := []pktline.Packet{pktline.Line("command=fetch"), pktline.Line("object-format=sha1"), {Kind: pktline.Delim}}
		for _, a := range args {
			lines = append(lines, pktline.Line(a))
		}
		body, err := pktline.Encode(append(lines, pktline.Packet{Kind: pktline.Flush}))
		if err != nil {
			t.Fatal(err)
		}
		status, raw := postRaw(t, bare, token, true, body)
		var head []pktline.Packet
		r := bytes.NewReader(raw)
		for {
			p, err := pktline.Read(r)
			if err != nil {
				break
			}
			head = append(head, p)
			if p.Kind == pktline.Data && p.Text() == "packfile" {
				break
			}
		}
		return status, head, raw
	}
	for _, shallow := range [][]string{nil, {"deepen 1"}} {
		status, head, raw := post(append([]string{"want-ref refs/pipelines/7", "ofs-delta", "no-progress", "done"}, shallow...)...)
		var texts []string
		for _, p := range head {
			texts = append(texts, p.Text())
		}
		got := strings.Join(texts, "|")
		want := "wanted-refs|" + f.git.Second + " refs/pipelines/7||packfile"
		if shallow != nil {
			want = "shallow-info|shallow " + f.git.Second + "||" + want
		}
		if status != http.StatusOK || got != want || !bytes.Contains(raw, []byte("PACK")) {
			t.Errorf("want-ref %v: %d, head %q, want %q and a pack", shallow, status, got, want)
		}
	}
	if status, _, _ := post("want-ref refs/heads/main", "done"); status != http.StatusForbidden {
		t.Errorf("want-ref of another ref: %d, want 403", status)
	}
}

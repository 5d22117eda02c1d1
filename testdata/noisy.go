package testdata

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// NoisyUpstreamSHA is the one ref's commit a NoisyUpstream advertises (it
// has no such object: its fetches never succeed).
const NoisyUpstreamSHA = "1f3e2d4c5b6a79880a1b2c3d4e5f60718293a4b5"

// NoisyUpstream is a hostile git host: it advertises one branch (protocol
// v0, with side-band-64k) and answers every fetch with noise bytes of
// `remote:` progress messages on side band 2, then hangs up: what a
// malicious or broken upstream can make a fetching git print to its
// stderr. Its URL is on loopback (allow LoopbackUpstreams).
type NoisyUpstream struct {
	srv   *httptest.Server
	noise int64
}

// StartNoisyUpstream starts a NoisyUpstream that streams noise bytes per
// fetch; it is stopped when the test ends.
func StartNoisyUpstream(tb testing.TB, noise int64) *NoisyUpstream {
	tb.Helper()
	u := &NoisyUpstream{noise: noise}
	u.srv = httptest.NewServer(http.HandlerFunc(u.serve))
	tb.Cleanup(u.srv.Close)
	return u
}

// URL is the repository's clone URL.
func (u *NoisyUpstream) URL() string { return u.srv.URL + "/noisy/app.git" }

func pkt(w io.Writer, data string) {
	fmt.Fprintf(w, "%04x%s", len(data)+4, data)
}

func (u *NoisyUpstream) serve(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/info/refs"):
		w.Header().Set("Content-Type", "application/x-git-upload-pack-advertisement")
		var b bytes.Buffer
		pkt(&b, "# service=git-upload-pack\n")
		b.WriteString("0000")
		pkt(&b, NoisyUpstreamSHA+" HEAD\x00side-band-64k ofs-delta no-progress symref=HEAD:refs/heads/main\n")
		pkt(&b, NoisyUpstreamSHA+" refs/heads/main\n")
		b.WriteString("0000")
		w.Write(b.Bytes())
	case r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack"):
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/x-git-upload-pack-result")
		pkt(w, "NAK\n")
		line := "noise " + strings.Repeat("remote-noise-", 76) + "\n" // 1,000 bytes
		chunk := "\x02" + strings.Repeat(line, 65)                    // one side-band packet
		for sent := int64(0); sent < u.noise; sent += int64(len(chunk) - 1) {
			pkt(w, chunk)
		}
		pkt(w, "\x03the noisy upstream hangs up\n")
	default:
		http.NotFound(w, r)
	}
}

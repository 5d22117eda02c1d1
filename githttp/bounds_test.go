package githttp

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// A fetch without side-band makes pack-objects print its progress on
// stderr, hundreds of writes: a client must not turn that into as many
// log lines. It is kept bounded and logged only when git fails.
func TestGitStderrDoesNotFloodTheLog(t *testing.T) {
	var logs testdata.LockedBuffer
	f := newFixture(t, "", func(c *Config) {
		c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	})
	files := map[string]string{}
	for i := range 3000 {
		files[fmt.Sprintf("d%d/f%d.txt", i%50, i)] = fmt.Sprintf("file %d\n", i)
	}
	sha := f.git.Commit(t, "many", files, "many files")
	body := fmt.Sprintf("%04xwant %s\n0000%04xdone\n", 4+len("want ")+40+1, sha, 4+len("done\n"))
	r, _ := http.NewRequest("POST", f.base+"/git/group/app.git/git-upload-pack", strings.NewReader(body))
	r.SetBasicAuth("x", apiToken)
	r.Header.Set("Content-Type", "application/x-git-upload-pack-request")
	resp, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || n == 0 {
		t.Fatalf("fetch: %d, %d bytes", resp.StatusCode, n)
	}
	if lines := strings.Count(logs.String(), "\n"); lines > 0 {
		t.Errorf("one successful fetch wrote %d log lines, the first: %.200s", lines, logs.String())
	}
}

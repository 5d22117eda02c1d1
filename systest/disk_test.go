package systest

import (
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// mountTinyDisk mounts a small tmpfs for the test, or skips when this
// machine does not let the test mount (not root).
func mountTinyDisk(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs to fill (needs root): %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", "-l", dir).Run() })
	return dir
}

// fill writes into dir until the disk is full, and answers the filler file.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			return path
		}
	}
}

// TestFullDisk: with the repositories' disk full, a pin answers 503 (retry
// later), the failure is counted, and nothing half-written is left; once
// space is back the same request succeeds.
func TestFullDisk(t *testing.T) {
	disk := mountTinyDisk(t, "2m")
	p := testdata.NewMergeRequestProject(t, disk)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", disk, "--redis", r.URL(), "--role", "api")
	filler := fill(t, disk)

	code, body := srv.call(t, "PUT", apiBase+"/pipelines/1/ref", `{"sha":"`+p.First+`"}`)
	if code != 503 || errCode(body) != "unavailable" {
		t.Fatalf("pin on a full disk = %d %v", code, body)
	}
	if refs := p.Refs(t, "refs/pipelines/"); len(refs) != 0 {
		t.Fatalf("refs after a failed pin: %v", refs)
	}
	var locks []string
	_ = filepath.Walk(p.Dir, func(path string, _ os.FileInfo, _ error) error {
		if strings.HasSuffix(path, ".lock") {
			locks = append(locks, path)
		}
		return nil
	})
	if len(locks) != 0 {
		t.Fatalf("lock files left behind: %v", locks)
	}
	if code, _ := srv.call(t, "GET", apiBase+"/pipelines/1/ref", ""); code != 404 {
		t.Fatalf("a pin was recorded for the failed write: %d", code)
	}
	resp, err := http.Get(srv.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `refkeeper_ref_write_failures_total{reason="disk_full"} 1`) {
		t.Fatalf("disk-full failure not counted:\n%s\n%s", grepLines(string(metrics), "refkeeper_"), srv.Logs.String())
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	if code, _ := srv.call(t, "PUT", apiBase+"/pipelines/1/ref", `{"sha":"`+p.First+`"}`); code != 201 {
		t.Fatalf("pin after space came back = %d", code)
	}
}

package systest

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// /metrics shows the git transactions behind the pins and deletes: how many
// there were and how many refs they held.
func TestTransactionMetrics(t *testing.T) {
	p := newProject(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--role", "api")
	for _, id := range []string{"1", "2", "3"} {
		if code, body := srv.call(t, "PUT", apiBase+"/pipelines/"+id+"/ref", `{"sha":"`+p.c1+`"}`); code != 201 {
			t.Fatalf("pin %s = %d %v", id, code, body)
		}
	}
	if code, body := srv.call(t, "DELETE", apiBase+"/pipelines/2/ref", ""); code != 204 {
		t.Fatalf("delete = %d %v", code, body)
	}
	resp, err := http.Get(srv.Base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	text := string(data)
	for _, want := range []string{
		`refkeeper_git_transaction_refs_sum{kind="create"} 3`,
		`refkeeper_git_transaction_refs_count{kind="delete"} 1`,
		`refkeeper_git_transaction_refs_sum{kind="delete"} 1`,
		`refkeeper_git_transaction_seconds_count{kind="delete"} 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("/metrics lacks %q:\n%s", want, grepLines(text, "refkeeper_git_transaction"))
		}
	}
}

package systest

import (
	"net"
	"os"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// A server listening on every address advertises the machine's host name
// in fetch_url, never 0.0.0.0, and says which flag to set.
func TestUnspecifiedListenAdvertisesHostName(t *testing.T) {
	host, err := os.Hostname()
	if err != nil || host == "" {
		t.Skipf("this machine has no host name (%v)", err)
	}
	p := newProject(t)
	r := testdata.StartRedis(t)
	srv := startServer(t, "--repos", p.root, "--redis", r.URL(), "--role", "api", "--listen", "0.0.0.0:0")
	_, port, err := net.SplitHostPort(strings.TrimPrefix(srv.Base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	srv.Base = "http://127.0.0.1:" + port
	code, pin := srv.call(t, "PUT", apiBase+"/pipelines/1/ref", `{"sha":"`+p.c1+`"}`)
	want := "http://" + net.JoinHostPort(host, port) + "/git/group/app.git"
	if code != 201 || pin["fetch_url"] != want {
		t.Fatalf("pin = %d, fetch_url %v; want %s", code, pin["fetch_url"], want)
	}
	if !strings.Contains(srv.Logs.String(), `"level":"WARN","msg":"--listen has no host runners can reach`) ||
		!strings.Contains(srv.Logs.String(), "set --fetch-url") {
		t.Fatalf("no warning naming --fetch-url:\n%s", srv.Logs.String())
	}
}

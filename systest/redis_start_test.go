package systest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// TestRedisRefusingTheCredentialsExitsTwo: a wrong password, or none where
// Redis wants one, is a configuration error: exit status 2 with one line
// that names the server and not the password.
func TestRedisRefusingTheCredentialsExitsTwo(t *testing.T) {
	r := testdata.StartRedisWith(t, "--requirepass", "the-right-password-1")
	bin := testdata.RefkeeperBinary(t)
	for _, url := range []string{
		"redis://:wrong-password-2@" + r.Addr() + "/0",
		"redis://" + r.Addr() + "/0",
	} {
		cmd := exec.Command(bin, "serve", "--repos", t.TempDir()+"/repos", "--redis", url, "--listen", "127.0.0.1:0",
			"--tokens", testToken)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(60 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Fatalf("--redis %s: still running after 60 s:\n%s", url, stderr.String())
		}
		out := stderr.String()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(out, r.Addr()) || strings.Contains(out, "wrong-password-2") {
			t.Fatalf("--redis %s: exit %d, stderr:\n%s", url, code, out)
		}
		t.Logf("--redis %s: exit 2: %s", strings.Replace(url, "wrong-password-2", "…", 1), strings.TrimSpace(out))
	}
}

// TestUnreachableRedis: the process starts and serves anyway; /readyz is
// 503 naming the address it cannot reach; every line of the log is JSON,
// and the Redis clients' own lines come at most one per 5 s.
func TestUnreachableRedis(t *testing.T) {
	addr := testdata.FreeAddr(t)
	start := time.Now()
	srv := startServer(t, "--repos", t.TempDir(), "--redis", "redis://"+addr+"/0")
	code, body := srv.call(t, "GET", "/readyz", "")
	msg := fmt.Sprint(body["error"])
	if code != 503 || !strings.Contains(msg, addr) {
		t.Fatalf("readyz with Redis unreachable = %d %v", code, body)
	}
	time.Sleep(12 * time.Second) // the clients retry meanwhile
	logs := srv.Logs.String()
	elapsed := time.Since(start)
	clientLines := 0
	for line := range strings.SplitSeq(strings.TrimSpace(logs), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a log line is not JSON: %q", line)
		}
		if c := rec["component"]; c == "go-redis" || c == "asynq" {
			clientLines++
		}
	}
	if most := int(elapsed/(5*time.Second)) + 1; clientLines > most {
		t.Fatalf("%d lines of the Redis clients in %v, want at most %d:\n%s", clientLines, elapsed, most, logs)
	}
	t.Logf("%d lines of the Redis clients in %v", clientLines, elapsed.Round(time.Second))
}

// TestRedisWaitReplicas: with --redis-wait-replicas 1 and the replica gone,
// a pin and a finish answer 503 with Retry-After, and what they did stands
// (the ref, the record on the master); once the replica is back, their
// retries answer as if the first had been acknowledged.
func TestRedisWaitReplicas(t *testing.T) {
	master := testdata.StartRedis(t)
	replica := testdata.StartReplica(t, master)
	p := newProject(t)
	srv := startServer(t, "--repos", p.root, "--redis", master.URL(), "--redis-wait-replicas", "1", "--gc-interval", "1h")
	if code, pin := srv.call(t, "PUT", apiBase+"/pipelines/1/ref", `{"sha":"`+p.c1+`"}`); code != 201 {
		t.Fatalf("pin with the replica up = %d %v", code, pin)
	}
	replica.Stop(t)
	m := master.Client(t)
	testdata.WaitFor(t, "the master to see its replica gone", 30*time.Second, func() bool {
		return strings.Contains(m.Info(t.Context(), "replication").Val(), "connected_slaves:0")
	})

	resp, err := httpDo("PUT", srv.Base+apiBase+"/pipelines/2/ref", `{"sha":"`+p.c1+`"}`)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("pin with the replica down = %d, Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if !p.hasRef(t, 2) || m.HGet(t.Context(), "refkeeper:{group/app}:pin:2", "state").Val() != "pinned" {
		t.Fatal("the pin answered 503 did not stand")
	}
	code, body := srv.call(t, "POST", apiBase+"/pipelines/1/finish", "")
	if code != 503 || m.HGet(t.Context(), "refkeeper:{group/app}:pin:1", "state").Val() != "finished" {
		t.Fatalf("finish with the replica down = %d %v", code, body)
	}
	finishedAt := m.HGet(t.Context(), "refkeeper:{group/app}:pin:1", "finished").Val()

	replica.Start(t)
	replica.WaitInSync(t)
	if code, pin := srv.call(t, "PUT", apiBase+"/pipelines/2/ref", `{"sha":"`+p.c1+`"}`); code != 200 || pin["sha"] != p.c1 {
		t.Fatalf("retried pin = %d %v", code, pin)
	}
	if code, pin := srv.call(t, "POST", apiBase+"/pipelines/1/finish", ""); code != 200 || pin["state"] != "finished" {
		t.Fatalf("retried finish = %d %v", code, pin)
	}
	if got := m.HGet(t.Context(), "refkeeper:{group/app}:pin:1", "finished").Val(); got != finishedAt {
		t.Fatalf("the retried finish moved finished_at: %s, was %s", got, finishedAt)
	}
	if code, _ := srv.call(t, "DELETE", apiBase+"/pipelines/2/ref", ""); code != 204 {
		t.Fatalf("delete with the replica up = %d", code)
	}
}

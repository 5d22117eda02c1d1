package testdata

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the name the sentinels of StartFailover know the master
// by (a sentinel URL's master_name).
const SentinelMaster = "refkeeper"

// sentinelConfig is what a redis-sentinel watches and how quickly it fails
// over: a master is down after a second without an answer, and two of the
// three sentinels agreeing is enough.
type sentinelConfig struct {
	masterAddr string
}

// write writes the sentinel's configuration file (redis-sentinel rewrites
// it as it learns, so it is a file of the sentinel's own) and answers its
// path.
func (c *sentinelConfig) write(dir string, port int) (string, error) {
	host, mport, err := net.SplitHostPort(c.masterAddr)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "sentinel.conf")
	conf := fmt.Sprintf(`port %d
bind 127.0.0.1
daemonize no
dir %s
sentinel monitor %s %s %s 2
sentinel down-after-milliseconds %s 1000
sentinel failover-timeout %s 10000
sentinel parallel-syncs %s 1
`, port, dir, SentinelMaster, host, mport, SentinelMaster, SentinelMaster, SentinelMaster)
	return path, os.WriteFile(path, []byte(conf), 0o644)
}

// Failover is a real Redis master with one replica, watched by three
// redis-sentinel processes, each on a free port and stopped when the test
// ends: what a client reaches through a redis+sentinel:// URL.
type Failover struct {
	Master    *Redis
	Replica   *Redis
	Sentinels []*Redis
}

// StartFailover starts a master, its replica and three sentinels, and waits
// until every sentinel knows the replica and the other two sentinels (else a
// failover could not happen).
func StartFailover(tb testing.TB) *Failover {
	tb.Helper()
	needProgram(tb, "redis-sentinel", "redis-sentinel")
	f := &Failover{Master: StartRedis(tb)}
	f.Replica = StartReplica(tb, f.Master)
	for range 3 {
		f.Sentinels = append(f.Sentinels, startOnFreePort(tb, &Redis{dir: tb.TempDir(),
			sentinelOf: &sentinelConfig{masterAddr: f.Master.Addr()}}))
	}
	for _, s := range f.Sentinels {
		waitSentinel(tb, s.Addr(), 60*time.Second, func(m map[string]string) bool {
			return m["num-slaves"] == "1" && m["num-other-sentinels"] == "2"
		})
	}
	return f
}

// SentinelAddrs are the sentinels' host:port.
func (f *Failover) SentinelAddrs() []string {
	var out []string
	for _, s := range f.Sentinels {
		out = append(out, s.Addr())
	}
	return out
}

// URL is the redis+sentinel:// URL of the master, every sentinel named in
// addr parameters (go-redis's own form).
func (f *Failover) URL() string {
	addrs := f.SentinelAddrs()
	return "redis+sentinel://" + addrs[0] + "/0?master_name=" + SentinelMaster + "&addr=" + strings.Join(addrs[1:], "&addr=")
}

// CommaURL is the same URL with the sentinels listed in the host part,
// comma-separated.
func (f *Failover) CommaURL() string {
	return "redis+sentinel://" + strings.Join(f.SentinelAddrs(), ",") + "/0?master_name=" + SentinelMaster
}

// WaitMaster waits until every sentinel names addr as the master, as it does
// once a failover to addr is over.
func (f *Failover) WaitMaster(tb testing.TB, addr string, timeout time.Duration) {
	tb.Helper()
	for _, s := range f.Sentinels {
		waitSentinel(tb, s.Addr(), timeout, func(m map[string]string) bool {
			return net.JoinHostPort(m["ip"], m["port"]) == addr && !strings.Contains(m["flags"], "down")
		})
	}
}

// waitSentinel polls SENTINEL MASTER on the sentinel at addr until cond
// holds of its answer.
func waitSentinel(tb testing.TB, addr string, timeout time.Duration, cond func(map[string]string) bool) {
	tb.Helper()
	c := redis.NewSentinelClient(&redis.Options{Addr: addr, DisableIdentity: true})
	defer c.Close()
	deadline := time.Now().Add(timeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		m, err := c.Master(ctx, SentinelMaster).Result()
		cancel()
		if err == nil && cond(m) {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testdata: sentinel %s did not get there within %v: %v %v", addr, timeout, err, m)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

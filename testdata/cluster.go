package testdata

import (
	"context"
	"errors"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// clusterNodes is how many masters a test cluster has: the least Redis
// Cluster accepts, and enough that a project's keys and the keys of other
// projects live on different nodes.
const clusterNodes = 3

// clusterBusOffset is where Redis Cluster puts a node's bus port: its port
// plus 10000, which must be free too.
const clusterBusOffset = 10000

// Cluster is a real Redis Cluster of three masters (no replicas), each a
// redis-server started for one test on free ports and stopped when it ends.
type Cluster struct {
	Nodes []*Redis
}

// StartCluster starts three redis-server processes with cluster mode on,
// joins them with redis-cli --cluster create and waits until every node
// says cluster_state:ok.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	needProgram(tb, "redis-cli", "redis-tools")
	c := &Cluster{}
	for range clusterNodes {
		c.Nodes = append(c.Nodes, startClusterNode(tb))
	}
	args := []string{"--cluster", "create"}
	args = append(args, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("testdata: redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, n := range c.Nodes {
		waitClusterOK(tb, n.Addr())
	}
	return c
}

// startClusterNode starts one redis-server in cluster mode on a port whose
// bus port is free as well.
func startClusterNode(tb testing.TB) *Redis {
	tb.Helper()
	needProgram(tb, "redis-server", "redis-server")
	r := &Redis{dir: tb.TempDir()}
	return startOnPort(tb, r, "redis-server in cluster mode", freeClusterPort, func(port int) []string {
		return []string{"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(r.dir, "nodes-"+strconv.Itoa(port)+".conf"),
			"--cluster-node-timeout", "5000"}
	})
}

// freeClusterPort is a free port whose bus port (port + 10000) is free too.
func freeClusterPort() (int, error) {
	for range 100 {
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		if port+clusterBusOffset > 65535 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+clusterBusOffset)))
		if err != nil {
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, errors.New("no free port with a free bus port found")
}

// waitClusterOK polls CLUSTER INFO on addr until it says cluster_state:ok.
func waitClusterOK(tb testing.TB, addr string) {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, DisableIdentity: true})
	defer c.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := c.ClusterInfo(ctx).Result()
		cancel()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("testdata: cluster node %s is not ok after 30s: %v\n%s", addr, err, info)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Addrs are the nodes' host:port.
func (c *Cluster) Addrs() []string {
	var out []string
	for _, n := range c.Nodes {
		out = append(out, n.Addr())
	}
	return out
}

// Client returns a cluster client that knows every node, closed when the
// test ends.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), DisableIdentity: true})
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

package testdata

import (
	"strings"
	"testing"
)

// A started cluster spreads the slots over three masters that all say so,
// and a cluster client routes keys of different slots to them.
func TestStartCluster(t *testing.T) {
	c := StartCluster(t)
	cc := c.Client(t)
	ctx := t.Context()
	nodes, err := cc.ClusterNodes(ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(nodes, "master"); n != 3 {
		t.Fatalf("cluster has %d masters, want 3:\n%s", n, nodes)
	}
	for _, k := range []string{"a", "b", "c", "d", "e", "f"} {
		if err := cc.Set(ctx, k, k, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
	}
	seen := 0
	for _, n := range c.Nodes {
		if keys := n.Client(t).Keys(ctx, "*").Val(); len(keys) > 0 {
			seen++
		}
	}
	if seen < 2 {
		t.Fatalf("six keys landed on %d node(s), want them spread over the masters", seen)
	}
}

package testdata

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// TestFailoverLosesWhatTheReplicaMissed: the master is killed while its
// replica is stopped; the sentinels make the replica master, and what the
// master had acknowledged meanwhile is gone.
func TestFailoverLosesWhatTheReplicaMissed(t *testing.T) {
	f := StartFailover(t)
	ctx := context.Background()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: f.SentinelAddrs(), DisableIdentity: true})
	defer c.Close()
	if err := c.Set(ctx, "before", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Wait(ctx, 1, 5*time.Second).Result(); err != nil || n != 1 {
		t.Fatalf("WAIT = %d, %v", n, err)
	}
	f.Replica.SaveAndStop(t)
	if err := c.Set(ctx, "after", "1", 0).Err(); err != nil {
		t.Fatal(err)
	}
	f.Master.Kill(t)
	f.Replica.Start(t)
	f.WaitMaster(t, f.Replica.Addr(), 60*time.Second)
	testdataWait(t, func() bool { return c.Get(ctx, "before").Val() == "1" })
	if n := c.Exists(ctx, "after").Val(); n != 0 {
		t.Fatalf("the write the replica missed survived the failover")
	}
}

func testdataWait(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

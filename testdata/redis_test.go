package testdata

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

func TestRedisStopStartLosesDataOnSamePort(t *testing.T) {
	r := StartRedis(t)
	addr := r.Addr()
	if !strings.HasPrefix(addr, "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want 127.0.0.1:<port>", addr)
	}
	if got, want := r.URL(), "redis://"+addr+"/0"; got != want {
		t.Fatalf("URL() = %q, want %q", got, want)
	}

	ctx := context.Background()
	c := r.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET = %q, %v; want \"v\"", got, err)
	}

	r.Stop(t)
	r.Stop(t) // idempotent
	// A plain dial: a go-redis PING would retry and log for a while.
	if conn, err := net.Dial("tcp", addr); err == nil {
		conn.Close()
		t.Fatal("stopped server still accepts connections")
	}

	r.Start(t)
	if got := r.Addr(); got != addr {
		t.Fatalf("Addr() after Start = %q, want the same %q", got, addr)
	}
	// The old client reconnects by itself: same address.
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET after restart: err = %v, want redis.Nil (nothing persisted)", err)
	}
}

func TestRedisFlushAll(t *testing.T) {
	r := StartRedis(t)
	ctx := context.Background()
	c := r.Client(t)
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	r.FlushAll(t)
	if n, err := c.DBSize(ctx).Result(); err != nil || n != 0 {
		t.Fatalf("DBSIZE after FlushAll = %d, %v; want 0", n, err)
	}
}

func TestRedisServersAreIndependent(t *testing.T) {
	a, b := StartRedis(t), StartRedis(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("two servers share %s", a.Addr())
	}
	ctx := context.Background()
	if err := a.Client(t).Set(ctx, "k", "a", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if err := b.Client(t).Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET on the other server: err = %v, want redis.Nil", err)
	}
}

package api

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestBucketsBounded: 100k distinct clients keep the limiter at its cap;
// the least recently used go first, the ones in use stay limited.
func TestBucketsBounded(t *testing.T) {
	const limit = 1000
	b := newBuckets(RateLimit{Rate: 0.001, Burst: 1, MaxKeys: limit})
	now := time.Unix(0, 0)
	if !b.allow("busy", now) {
		t.Fatal("first request of busy refused")
	}
	for i := range 100_000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		b.allow(addressBucket(a), now)
		if i%100 == 0 && b.allow("busy", now) {
			t.Fatalf("busy got a new bucket after %d others", i)
		}
		if n := b.len(); n > limit {
			t.Fatalf("%d buckets after %d clients, cap %d", n, i+1, limit)
		}
	}
	if n := b.len(); n != limit {
		t.Fatalf("%d buckets, want the cap %d", n, limit)
	}
	if _, ok := b.keys[addressBucket(netip.AddrFrom4([4]byte{10, 0, 0, 0}))]; ok {
		t.Fatal("the least recently used bucket is still there")
	}
}

func TestAddressBucket(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.9":        "203.0.113.9",
		"::ffff:203.0.113.9": "203.0.113.9",
		"2001:db8:a:b:c::1":  "2001:db8:a:b::/64",
		"2001:db8:a:b::ffff": "2001:db8:a:b::/64",
	} {
		if got := addressBucket(netip.MustParseAddr(in)); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
	if _, err := ParseTrustedProxies("10.0.0.0/8,nope"); err == nil {
		t.Error("ParseTrustedProxies took nope")
	}
	got, err := ParseTrustedProxies(" 10.1.2.3/8 , ::1,")
	if err != nil || fmt.Sprint(got) != "[10.0.0.0/8 ::1/128]" {
		t.Errorf("ParseTrustedProxies = %v, %v", got, err)
	}
}

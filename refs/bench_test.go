package refs

import (
	"fmt"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// benchStore is a Store on a real redis-server of its own.
func benchStore(b *testing.B) *Store {
	b.Helper()
	return &Store{Client: testdata.StartRedis(b).Client(b)}
}

const benchSHA = ObjectID("0123456789abcdef0123456789abcdef01234567")

// BenchmarkPinTransition is the record side of a new pin: one Lua call.
func BenchmarkPinTransition(b *testing.B) {
	s := benchStore(b)
	now := time.Now()
	id := PipelineID(0)
	for b.Loop() {
		id++
		if _, err := s.Pin(b.Context(), "bench/app", id, benchSHA, 0, now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkFinishTransition releases pins one by one.
func BenchmarkFinishTransition(b *testing.B) {
	s := benchStore(b)
	now := time.Now()
	for id := PipelineID(1); id <= 5000; id++ {
		if _, err := s.Pin(b.Context(), "bench/app", id, benchSHA, 0, now); err != nil {
			b.Fatal(err)
		}
	}
	pol := Policy{Retention: time.Hour, MaxAge: 24 * time.Hour}
	id := PipelineID(0)
	for b.Loop() {
		id = id%5000 + 1
		if _, err := s.Finish(b.Context(), "bench/app", id, now, pol); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkClaimAndCommit1000 is the record side of deleting a batch of
// 1,000 due pins: one pipelined claim, one pipelined commit.
func BenchmarkClaimAndCommit1000(b *testing.B) {
	s := benchStore(b)
	then := time.Now().Add(-48 * time.Hour)
	ids := make([]PipelineID, 1000)
	next := PipelineID(0)
	for b.Loop() {
		b.StopTimer()
		for i := range ids {
			next++
			ids[i] = next
			if _, err := s.Pin(b.Context(), "bench/app", next, benchSHA, 0, then); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
		if _, err := s.ClaimDue(b.Context(), "bench/app", ids, time.Now(), time.Hour, "t"); err != nil {
			b.Fatal(err)
		}
		if _, err := s.CommitDeletes(b.Context(), "bench/app", ids, time.Now(), "t"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPinMetricsRefresh is what a metrics refresh costs over 10,000
// projects (at most one per snapshotAge per process; scrapes in between
// cost nothing).
func BenchmarkPinMetricsRefresh(b *testing.B) {
	s := benchStore(b)
	now := time.Now()
	for i := range 10_000 {
		p := Project(fmt.Sprintf("bench/app%d", i))
		if _, err := s.Pin(b.Context(), p, 1, benchSHA, 0, now); err != nil {
			b.Fatal(err)
		}
		if err := s.AddProject(b.Context(), p); err != nil {
			b.Fatal(err)
		}
	}
	c := &pinCollector{store: s, clock: SystemClock{}}
	for b.Loop() {
		if _, _, err := c.read(b.Context()); err != nil {
			b.Fatal(err)
		}
	}
}

package gitops

import (
	"sync/atomic"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// benchRepo is a repository with n packed pipeline refs and one commit.
func benchRepo(b *testing.B, packed int64) (*Repo, ObjectID) {
	b.Helper()
	dir := b.TempDir()
	g := testdata.NewBareRepo(b, dir, "bench/app")
	c := g.Commit(b, "main", map[string]string{"a": "a\n"}, "bench")
	if packed > 0 {
		g.PipelineRefs(b, 1, packed, c)
		g.PackRefs(b)
	}
	root := &Root{Dir: dir}
	b.Cleanup(root.Close)
	repo, err := root.Open("bench/app")
	if err != nil {
		b.Fatal(err)
	}
	return repo, ObjectID(c)
}

func BenchmarkCreate(b *testing.B) {
	repo, c := benchRepo(b, 1000)
	next := int64(1_000_000)
	b.ResetTimer()
	for b.Loop() {
		next++
		if _, err := repo.Create(b.Context(), PipelineRef(next), c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCreateParallel shows the group commit: concurrent creates share
// git processes.
func BenchmarkCreateParallel(b *testing.B) {
	repo, c := benchRepo(b, 1000)
	var next atomic.Int64
	next.Store(1_000_000)
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := repo.Create(b.Context(), PipelineRef(next.Add(1)), c); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

func BenchmarkCompareAndDelete(b *testing.B) {
	repo, c := benchRepo(b, 1000)
	b.ResetTimer()
	id := int64(0)
	for b.Loop() {
		id++
		if id > 1000 {
			b.StopTimer()
			if _, err := repo.Create(b.Context(), PipelineRef(id), c); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
		if _, err := repo.Delete(b.Context(), PipelineRef(id), c); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeleteBatch1000 deletes 1,000 packed refs in one call.
func BenchmarkDeleteBatch1000(b *testing.B) {
	for b.Loop() {
		b.StopTimer()
		repo, c := benchRepo(b, 1000)
		batch := make([]RefState, 1000)
		for i := range batch {
			batch[i] = RefState{Ref: PipelineRef(int64(i + 1)), ID: c}
		}
		b.StartTimer()
		if _, err := repo.DeleteBatch(b.Context(), batch); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIsCommit(b *testing.B) {
	repo, c := benchRepo(b, 0)
	for b.Loop() {
		if err := repo.IsCommit(c); err != nil {
			b.Fatal(err)
		}
	}
}

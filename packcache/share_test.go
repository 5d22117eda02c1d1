package packcache

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestShare: one generation per key among readers that arrive while it
// runs and after it ends; a finished entry's Rest is its file from an
// offset; a failed generation's readers get its error and the next
// request generates again; Share's keys never meet the hook's.
func TestShare(t *testing.T) {
	c, err := Open(Config{Dir: t.TempDir(), Hook: []string{"unused"}, Registerer: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	release := make(chan struct{})
	runs := 0
	gen := func(ctx context.Context, w io.Writer) error {
		runs++
		if _, err := io.WriteString(w, "head\n"); err != nil {
			return err
		}
		<-release
		_, err := io.WriteString(w, "rest")
		return err
	}
	key := [][]byte{[]byte("a"), []byte("b")}
	var wg sync.WaitGroup
	outs := make([]string, 4)
	for i := range outs {
		r, _, ok := c.Share(context.Background(), key, gen)
		if !ok {
			t.Fatal("bypassed")
		}
		wg.Go(func() {
			defer r.Close()
			b, err := io.ReadAll(r)
			if err != nil {
				t.Error(err)
			}
			outs[i] = string(b)
		})
	}
	close(release)
	wg.Wait()
	for i, o := range outs {
		if o != "head\nrest" {
			t.Fatalf("reader %d read %q", i, o)
		}
	}
	r, hit, _ := c.Share(context.Background(), key, gen)
	rest, n, ok := r.Rest(5)
	b, _ := io.ReadAll(rest)
	r.Close()
	if !hit || !ok || n != 4 || string(b) != "rest" || runs != 1 {
		t.Fatalf("after the generation: hit %v, Rest %v %d %q, %d generations", hit, ok, n, b, runs)
	}
	if hit, miss, _ := results(c); hit != 4 || miss != 1 {
		t.Fatalf("%v hits and %v misses, want 4 and 1", hit, miss)
	}

	failed := errors.New("git failed")
	bad := [][]byte{[]byte("bad")}
	r, _, _ = c.Share(context.Background(), bad, func(ctx context.Context, w io.Writer) error {
		io.WriteString(w, "partial")
		return failed
	})
	if _, err := io.ReadAll(r); !errors.Is(err, failed) {
		t.Fatalf("a failed generation's reader got %v", err)
	}
	if _, _, ok := r.Rest(0); ok {
		t.Fatal("a failed entry has a Rest")
	}
	r.Close()
	r, hit, _ = c.Share(context.Background(), bad, gen)
	b, err = io.ReadAll(r)
	r.Close()
	if hit || err != nil || string(b) != "head\nrest" {
		t.Fatalf("after a failure: hit %v, %q, %v; want a new generation", hit, b, err)
	}

	// The hook's key of the same words is another key.
	if hashParts([][]byte{[]byte(shareNamespace), []byte("group/app")}) == key2hook() {
		t.Fatal("a shared key met a hook key")
	}
}

func key2hook() string { return key("group/app", 0, nil, nil) }

package limits

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseSize(t *testing.T) {
	for in, want := range map[string]Size{
		"5%": {Percent: 5}, "0.5%": {Percent: 0.5}, "0": {}, "1048576": {Bytes: 1 << 20},
		"10GiB": {Bytes: 10 << 30}, "500MB": {Bytes: 500e6}, "2G": {Bytes: 2 << 30}, "1 TiB": {Bytes: 1 << 40},
	} {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %+v, %v; want %+v", in, got, err, want)
		}
		if again, err := ParseSize(got.String()); err != nil || again != got {
			t.Errorf("%q: String %q reads back as %+v, %v", in, got.String(), again, err)
		}
	}
	for _, bad := range []string{"", "%", "100%", "-1%", "-5", "ten", "5XB", "NaN%", "1e30TiB"} {
		if _, err := ParseSize(bad); err == nil {
			t.Errorf("ParseSize(%q) accepted", bad)
		}
	}
}

// TestDiskFloor: a floor above the file system's real free space refuses
// (the disk need not be filled); one below it, or none, admits.
func TestDiskFloor(t *testing.T) {
	dir := t.TempDir()
	probe := &DiskFloor{Path: dir}
	sp, err := probe.Space()
	if err != nil || sp.Total == 0 {
		t.Fatalf("Space: %+v, %v", sp, err)
	}
	above := &DiskFloor{Path: dir, Min: Size{Bytes: sp.Free + 1<<40}}
	var low *LowDiskError
	if err := above.Check(); !errors.As(err, &low) || low.Free > low.Floor {
		t.Fatalf("floor above the free space: %v", err)
	}
	t.Logf("refused: %v", above.Check())
	if err := (&DiskFloor{Path: dir, Min: Size{Percent: 99.999999}}).Check(); sp.Free < sp.Total*99/100 && err == nil {
		t.Errorf("a floor of almost all of the disk admitted %+v", sp)
	}
	for _, f := range []*DiskFloor{nil, {Path: dir}, {Path: dir, Min: Size{Bytes: 1}}} {
		if err := f.Check(); err != nil {
			t.Errorf("%+v: %v", f, err)
		}
	}
	ctx, stop := above.Watch(t.Context(), 10*time.Millisecond)
	defer stop()
	<-ctx.Done()
	if !errors.As(context.Cause(ctx), &low) {
		t.Errorf("watch ended with %v", context.Cause(ctx))
	}
	ctx, stop = (&DiskFloor{Path: dir, Min: Size{Bytes: 1}}).Watch(t.Context(), 10*time.Millisecond)
	select {
	case <-ctx.Done():
		t.Errorf("a floor that holds ended the work: %v", context.Cause(ctx))
	case <-time.After(50 * time.Millisecond):
	}
	stop()
}

// TestSlots: never more than the bound at once; a caller whose deadline
// passes in line gets *BusyError and holds nothing.
func TestSlots(t *testing.T) {
	s := NewSlots("fetches", 2)
	var running, most atomic.Int64
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			release, err := s.Acquire(t.Context())
			if err != nil {
				t.Error(err)
				return
			}
			n := running.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			time.Sleep(time.Millisecond)
			running.Add(-1)
			release()
		})
	}
	wg.Wait()
	if most.Load() != 2 {
		t.Errorf("at most %d ran at once, want 2", most.Load())
	}
	r1, _ := s.Acquire(t.Context())
	r2, _ := s.Acquire(t.Context())
	_, err := s.AcquireWithin(t.Context(), 20*time.Millisecond)
	var busy *BusyError
	if !errors.As(err, &busy) || busy.Limit != 2 || s.InUse() != 2 || s.Waiting() != 0 {
		t.Errorf("full: %v, in use %d, waiting %d", err, s.InUse(), s.Waiting())
	}
	r1()
	r2()
	if NewSlots("x", 0) != nil {
		t.Error("a bound of 0 is no bound")
	}
	if release, err := (*Slots)(nil).Acquire(t.Context()); err != nil {
		t.Error(err)
	} else {
		release()
	}
}

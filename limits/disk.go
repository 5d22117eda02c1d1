package limits

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Size is an amount of disk: a number of bytes, or a percentage of a file
// system's size (Percent > 0 wins). The zero Size is no amount at all.
type Size struct {
	Bytes   uint64
	Percent float64
}

// units are the suffixes ParseSize reads, decimal and binary.
var units = []struct {
	suffix string
	mult   uint64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"T", 1 << 40},
	{"B", 1},
}

// ParseSize reads "5%" (of the file system, below 100), a byte count
// ("1048576") or one with a unit ("10GiB", "500MB", "2G" = 2 GiB); "0" is
// no amount.
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	if p, ok := strings.CutSuffix(t, "%"); ok {
		f, err := strconv.ParseFloat(strings.TrimSpace(p), 64)
		if err != nil || math.IsNaN(f) || f < 0 || f >= 100 {
			return Size{}, errors.New("a percentage must be a number from 0 to below 100")
		}
		return Size{Percent: f}, nil
	}
	mult := uint64(1)
	for _, u := range units {
		if n, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = strings.TrimSpace(n), u.mult
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || math.IsNaN(f) || f < 0 || f*float64(mult) >= math.MaxUint64/2 {
		return Size{}, errors.New("not a size (like 5%, 10GiB or 500MB)")
	}
	return Size{Bytes: uint64(f * float64(mult))}, nil
}

// String is the Size as ParseSize reads it.
func (s Size) String() string {
	if s.Percent > 0 {
		return strconv.FormatFloat(s.Percent, 'g', -1, 64) + "%"
	}
	for i := 3; i >= 0; i-- { // TiB down to KiB: the largest that divides it
		if u := units[i]; s.Bytes > 0 && s.Bytes%u.mult == 0 {
			return strconv.FormatUint(s.Bytes/u.mult, 10) + u.suffix
		}
	}
	return strconv.FormatUint(s.Bytes, 10)
}

// IsZero reports whether the Size is no amount (a floor of zero is off).
func (s Size) IsZero() bool { return s.Bytes == 0 && s.Percent <= 0 }

// of is the Size in bytes on a file system of total bytes.
func (s Size) of(total uint64) uint64 {
	if s.Percent > 0 {
		return uint64(float64(total) * s.Percent / 100)
	}
	return s.Bytes
}

// Space is what a file system has: its size and what this process may
// still write (blocks available to unprivileged users).
type Space struct {
	Total, Free uint64
}

// DiskFloor is the free space the file system holding Path keeps: work
// that would grow it is refused below Min. A nil *DiskFloor, or a zero
// Min, is no floor. It is safe for concurrent use.
type DiskFloor struct {
	Path string
	Min  Size
}

// Space reads the file system's size and free space now (one statfs).
func (f *DiskFloor) Space() (Space, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(f.Path, &st); err != nil {
		return Space{}, fmt.Errorf("reading the free space of %s: %w", f.Path, err)
	}
	bs := uint64(st.Bsize)
	return Space{Total: st.Blocks * bs, Free: st.Bavail * bs}, nil
}

// Floor is the floor in bytes on a file system of total bytes.
func (f *DiskFloor) Floor(total uint64) uint64 {
	if f == nil {
		return 0
	}
	return f.Min.of(total)
}

// Check answers *LowDiskError when the file system is below the floor now,
// else nil. A file system that cannot be read is not taken for full: the
// write that follows says what is wrong with it.
func (f *DiskFloor) Check() error {
	if f == nil || f.Min.IsZero() {
		return nil
	}
	sp, err := f.Space()
	if err != nil {
		return nil
	}
	if floor := f.Min.of(sp.Total); sp.Free < floor {
		return &LowDiskError{Path: f.Path, Free: sp.Free, Floor: floor, Min: f.Min}
	}
	return nil
}

// DefaultWatchInterval is how often Watch reads the free space.
const DefaultWatchInterval = time.Second

// Watch is ctx, ended with a *LowDiskError as its cause (context.Cause)
// once the free space is below the floor, read every interval (zero:
// DefaultWatchInterval) while the work runs. stop ends the watch (and the
// context); call it when the work is done.
func (f *DiskFloor) Watch(ctx context.Context, interval time.Duration) (watched context.Context, stop context.CancelFunc) {
	if f == nil || f.Min.IsZero() {
		return context.WithCancel(ctx)
	}
	if interval <= 0 {
		interval = DefaultWatchInterval
	}
	watched, cancel := context.WithCancelCause(ctx)
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-watched.Done():
				return
			case <-t.C:
				if err := f.Check(); err != nil {
					cancel(err)
					return
				}
			}
		}
	}()
	return watched, func() { close(done); cancel(context.Canceled) }
}

// LowDiskError is a file system below its floor: the work that would grow
// it was refused or stopped. Retrying once space is freed is safe.
type LowDiskError struct {
	Path        string
	Free, Floor uint64
	Min         Size
}

func (e *LowDiskError) Error() string {
	floor := Size{Bytes: e.Floor}.human()
	if e.Min.Percent > 0 {
		floor += " (" + e.Min.String() + ")"
	}
	return fmt.Sprintf("the repos root is below its free-space floor: %s free, %s required", Size{Bytes: e.Free}.human(), floor)
}

// human is a byte count rounded for a message.
func (s Size) human() string {
	b := float64(s.Bytes)
	for _, u := range []string{"B", "KiB", "MiB", "GiB", "TiB"} {
		if b < 1024 || u == "TiB" {
			return strconv.FormatFloat(b, 'f', 1, 64) + " " + u
		}
		b /= 1024
	}
	return ""
}

// IsLowDisk reports whether err is, or wraps, a *LowDiskError.
func IsLowDisk(err error) bool {
	var low *LowDiskError
	return errors.As(err, &low)
}

package watchfile_test

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/watchfile"
)

func TestLoadReadsOnlyChanges(t *testing.T) {
	path := filepath.Join(t.TempDir(), "f")
	at := time.Now().Add(-time.Hour)
	put := func(body string, mtime time.Time) {
		t.Helper()
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	var reads []string
	parse := func(raw []byte) error {
		reads = append(reads, string(raw))
		if string(raw) == "bad" {
			return errors.New("bad content")
		}
		return nil
	}
	put("a", at)
	if _, err := (&watchfile.File{Path: path + ".none"}).Load(false, parse); err == nil {
		t.Fatal("Load of a missing file = nil error")
	}
	f := &watchfile.File{Path: path}
	reads = nil
	if changed, err := f.Load(false, parse); !changed || err != nil {
		t.Fatalf("first Load = %v %v", changed, err)
	}
	if changed, err := f.Load(false, parse); changed || err != nil {
		t.Fatalf("unchanged Load = %v %v", changed, err)
	}
	if changed, _ := f.Load(true, parse); !changed {
		t.Fatal("forced Load did not read")
	}
	put("b", at.Add(time.Second)) // same size, new time
	if changed, err := f.Load(false, parse); !changed || err != nil {
		t.Fatalf("Load after a new mtime = %v %v", changed, err)
	}
	put("bad", at.Add(time.Second)) // same time, new size
	changed, err := f.Load(false, parse)
	if !changed || err == nil {
		t.Fatalf("Load of a bad edit = %v %v", changed, err)
	}
	// Still bad and unchanged: the same error, no new read.
	if changed, again := f.Load(false, parse); changed || again != err {
		t.Fatalf("unchanged bad Load = %v %v, want false and %v", changed, again, err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	changed, err = f.Load(false, parse)
	var re *watchfile.ReadError
	if !changed || !errors.As(err, &re) || re.Path != path {
		t.Fatalf("Load of a removed file = %v %v", changed, err)
	}
	if changed, _ := f.Load(false, parse); changed {
		t.Fatal("a file still missing counts as a change again")
	}
	want := []string{"a", "a", "b", "bad"}
	if len(reads) != len(want) {
		t.Fatalf("reads = %q, want %q", reads, want)
	}
	for i := range want {
		if reads[i] != want[i] {
			t.Fatalf("reads = %q, want %q", reads, want)
		}
	}
}

// An edit that keeps the size and puts the old modification time back (cp
// -p, rsync -t, tar x, touch -r) is still a change: a revoked token must not
// stay valid because its replacement digest has the same length.
func TestLoadSeesEditsThatKeepTimeAndSize(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	mtime := time.Now().Add(-time.Hour).Truncate(time.Second)
	var last string
	parse := func(raw []byte) error { last = string(raw); return nil }
	write := func(p, body string) {
		t.Helper()
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	f := &watchfile.File{Path: path}
	write(path, "version-a")
	if _, err := f.Load(false, parse); err != nil || last != "version-a" {
		t.Fatalf("first Load: %v %q", err, last)
	}
	// Replaced by a rename (a new inode), same size and mtime.
	write(path+".new", "version-b")
	if err := os.Rename(path+".new", path); err != nil {
		t.Fatal(err)
	}
	if changed, err := f.Load(false, parse); err != nil || !changed || last != "version-b" {
		t.Errorf("after a rename with the old size and mtime: changed %v, %v, read %q, want version-b", changed, err, last)
	}
	// Rewritten in place, same size and mtime: only the change time moved.
	before, _ := os.Stat(path)
	write(path, "version-c")
	after, _ := os.Stat(path)
	if before.Sys().(*syscall.Stat_t).Ctim == after.Sys().(*syscall.Stat_t).Ctim {
		t.Skip("this file system's change time did not move between two writes")
	}
	if changed, err := f.Load(false, parse); err != nil || !changed || last != "version-c" {
		t.Errorf("after an in-place edit with the old size and mtime: changed %v, %v, read %q, want version-c", changed, err, last)
	}
}

package watchfile_test

import (
	"errors"
	"os"
	"path/filepath"
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

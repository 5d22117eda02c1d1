package gitexec

import (
	"context"
	"fmt"
	"strings"
	"testing"
)

// TestStderrKeepsHeadAndTail: what fits is kept whole; beyond it, the
// first and last Keep bytes and the count of what lay between.
func TestStderrKeepsHeadAndTail(t *testing.T) {
	small := &Stderr{Keep: 8}
	fmt.Fprint(small, "fatal: x\n")
	if got := small.String(); got != "fatal: x" || small.Dropped() != 0 {
		t.Errorf("small: %q, dropped %d", got, small.Dropped())
	}
	s := &Stderr{Keep: 10}
	fmt.Fprint(s, "HEAD-12345")
	for range 1000 {
		fmt.Fprint(s, "remote: noise\n")
	}
	fmt.Fprint(s, "x")
	fmt.Fprint(s, "fatal: end")
	got := s.String()
	if !strings.HasPrefix(got, "HEAD-12345\n") || !strings.HasSuffix(got, "...]\nfatal: end") || s.Dropped() != 14001 {
		t.Errorf("kept %q, dropped %d", got, s.Dropped())
	}
	if len(got) > 200 {
		t.Errorf("kept %d bytes", len(got))
	}
}

// TestStderrOfAFloodingProcess: a process writing 64 MiB to stderr leaves
// at most twice DefaultStderrKeep of it in memory, ending with its last
// line.
func TestStderrOfAFloodingProcess(t *testing.T) {
	var s Stderr
	cmd := Command(context.Background(), Process{Git: "/bin/sh"}, "-c",
		`head -c 67108864 /dev/zero | tr '\0' 'r'; echo; echo 'fatal: the last word' >&2`)
	cmd.Stdout = &s
	cmd.Stderr = &s
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
	got := s.String()
	if len(got) > 2*DefaultStderrKeep+100 || !strings.HasSuffix(got, "fatal: the last word") {
		t.Errorf("kept %d bytes, ending %q", len(got), got[max(0, len(got)-40):])
	}
	t.Logf("64 MiB written, %d bytes kept, %d dropped", len(got), s.Dropped())
}

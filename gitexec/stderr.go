package gitexec

import (
	"fmt"
	"strings"
	"sync"
)

// DefaultStderrKeep is how much of a git process's stderr an Stderr keeps
// at each end: git says what went wrong in its last lines (and sometimes
// its first), while an upstream may stream any amount of `remote:` noise
// through it.
const DefaultStderrKeep = 16 << 10

// Stderr is a git process's stderr kept to a bounded head and tail: the
// first and the last Keep bytes, and a count of what lay between. Every
// git process's stderr that is read goes through one, so what a process
// (or an upstream speaking through it) writes there costs at most 2*Keep
// bytes of memory. The zero value keeps DefaultStderrKeep at each end. It
// is safe for concurrent writes (git's helpers share the pipe).
type Stderr struct {
	// Keep is how many bytes are kept at each end; zero:
	// DefaultStderrKeep.
	Keep int

	mu      sync.Mutex
	head    []byte
	tail    []byte // a ring of Keep bytes once full
	at      int    // where the ring's oldest byte is
	dropped int64
}

func (s *Stderr) keep() int {
	if s.Keep > 0 {
		return s.Keep
	}
	return DefaultStderrKeep
}

// Write keeps what fits in the head, then the latest bytes in the tail.
func (s *Stderr) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n, keep := len(p), s.keep()
	if room := keep - len(s.head); room > 0 {
		take := min(room, len(p))
		s.head = append(s.head, p[:take]...)
		p = p[take:]
	}
	if len(p) > keep { // only its end can stay
		s.dropped += int64(len(p) - keep)
		p = p[len(p)-keep:]
	}
	for len(p) > 0 {
		if len(s.tail) < keep {
			take := min(keep-len(s.tail), len(p))
			s.tail = append(s.tail, p[:take]...)
			p = p[take:]
			continue
		}
		// Full: overwrite the oldest bytes.
		c := copy(s.tail[s.at:], p)
		s.dropped += int64(c)
		s.at = (s.at + c) % keep
		p = p[c:]
	}
	return n, nil
}

// Dropped is how many bytes were not kept.
func (s *Stderr) Dropped() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.dropped
}

// String is what was kept, trimmed of white space at its ends: the head,
// a line saying how much was left out, and the tail.
func (s *Stderr) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	b.Write(s.head)
	if s.dropped > 0 {
		fmt.Fprintf(&b, "\n[... %d bytes of git's stderr left out ...]\n", s.dropped)
	}
	b.Write(s.tail[s.at:])
	b.Write(s.tail[:s.at])
	return strings.TrimSpace(b.String())
}

package gitops

import (
	"context"
	"errors"
	"testing"
)

// TestRetryRefusedBound: rounds run while they ask for another, never more
// than maxRounds, and only the last is told it is the last.
func TestRetryRefusedBound(t *testing.T) {
	var lasts []bool
	retryRefused(func(n int, last bool) bool {
		lasts = append(lasts, last)
		return true
	})
	if len(lasts) != maxRounds || !lasts[maxRounds-1] || lasts[0] {
		t.Fatalf("rounds told last = %v, want %d rounds, the last alone last", lasts, maxRounds)
	}
	runs := 0
	retryRefused(func(n int, last bool) bool {
		runs++
		return n < 1
	})
	if runs != 2 {
		t.Fatalf("%d rounds ran, want 2 (the second asked for none)", runs)
	}
}

// TestRefusalIsFinal: a timeout, a failed check or an ended context ends
// the rounds; a refusal git explains (a lock, a moved ref) does not.
func TestRefusalIsFinal(t *testing.T) {
	live := context.Background()
	ended, cancel := context.WithCancel(live)
	cancel()
	for _, c := range []struct {
		name  string
		ctx   context.Context
		err   error
		final bool
	}{
		{"timeout", live, &TimeoutError{}, true},
		{"check", live, &CheckError{Err: errors.New("redis down")}, true},
		{"context ended", ended, &LockedError{Ref: PipelineRef(1)}, true},
		{"locked", live, &LockedError{Ref: PipelineRef(1)}, false},
		{"moved", live, &MismatchingStateError{Ref: PipelineRef(1)}, false},
	} {
		if got := refusalIsFinal(c.ctx, c.err); got != c.final {
			t.Errorf("%s: refusalIsFinal = %v, want %v", c.name, got, c.final)
		}
	}
}

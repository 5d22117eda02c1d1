package main

import (
	"testing"
	"time"
)

// TestShutdownBudgetParts: the drain part leaves room to close, never less
// than four fifths of the budget, and the close part is bounded.
func TestShutdownBudgetParts(t *testing.T) {
	for _, tt := range []struct{ budget, drain time.Duration }{
		{25 * time.Second, 22 * time.Second},
		{4 * time.Second, 3200 * time.Millisecond},
		{time.Minute, 57 * time.Second},
	} {
		if got := drainPart(tt.budget); got != tt.drain {
			t.Errorf("drainPart(%v) = %v, want %v", tt.budget, got, tt.drain)
		}
	}
}

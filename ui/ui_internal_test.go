package ui

import (
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/refs"
)

func TestExpiry(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	maxAge := 720 * time.Hour
	tests := []struct {
		name string
		pin  refs.Pin
		want string
	}{
		{"pinned: max-age", refs.Pin{State: refs.StatePinned, CreatedAt: now.Add(-time.Hour)}, "in 29d 23h (max-age)"},
		{"finished: expires_at", refs.Pin{State: refs.StateFinished, CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(90 * time.Minute)}, "in 1h 30m"},
		{"finished: max-age first", refs.Pin{State: refs.StateFinished, CreatedAt: now.Add(-719 * time.Hour), ExpiresAt: now.Add(5 * time.Hour)}, "in 1h 0m (max-age)"},
		{"finished: overdue", refs.Pin{State: refs.StateFinished, CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(-time.Second)}, "due now"},
		{"deleted", refs.Pin{State: refs.StateDeleted, CreatedAt: now}, "gone"},
	}
	for _, tt := range tests {
		if got := expiry(tt.pin, maxAge, now); got != tt.want {
			t.Errorf("%s: %q, want %q", tt.name, got, tt.want)
		}
	}
}

func TestParseFilter(t *testing.T) {
	good := url.Values{"project": {"group/app"}, "state": {"finished"}, "mr": {"12"}, "q": {"gr"}}
	f, err := parseFilter(good)
	if err != nil || f.project != "group/app" || f.state != refs.StateFinished || f.mr != 12 {
		t.Fatalf("parseFilter(%v) = %+v, %v", good, f, err)
	}
	if l := f.link(func(g *filter) { g.Cursor = "c" }); l != "/ui/?cursor=c&mr=12&project=group%2Fapp&q=gr&state=finished" {
		t.Errorf("link = %s", l)
	}
	for _, bad := range []url.Values{{"project": {"../x"}}, {"state": {"gone"}}, {"mr": {"0"}}, {"mr": {"-1"}}, {"q": {string(make([]byte, 600))}}} {
		if _, err := parseFilter(bad); err == nil {
			t.Errorf("parseFilter(%v) took it", bad)
		}
	}
}

func TestSameOrigin(t *testing.T) {
	tests := []struct {
		origin, site string
		want         bool
	}{
		{"", "", true},
		{"http://refkeeper.example", "same-origin", true},
		{"https://refkeeper.example", "", true}, // behind a TLS-terminating proxy
		{"https://evil.example", "", false},
		{"null", "", false},
		{"", "cross-site", false},
		{"", "same-site", false},
		{"http://refkeeper.example.evil.example", "", false},
	}
	for _, tt := range tests {
		r := httptest.NewRequest("POST", "http://refkeeper.example/ui/login", nil)
		if tt.origin != "" {
			r.Header.Set("Origin", tt.origin)
		}
		if tt.site != "" {
			r.Header.Set("Sec-Fetch-Site", tt.site)
		}
		if got := sameOrigin(r); got != tt.want {
			t.Errorf("Origin %q, Sec-Fetch-Site %q: %v, want %v", tt.origin, tt.site, got, tt.want)
		}
	}
}

func TestSpanAndBytes(t *testing.T) {
	for d, want := range map[time.Duration]string{-time.Second: "0s", 42 * time.Second: "42s", 61 * time.Minute: "1h 1m", 49 * time.Hour: "2d 1h"} {
		if got := span(d); got != want {
			t.Errorf("span(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[int64]string{512: "512 B", 1536: "1.5 KiB", 3 << 30: "3.0 GiB"} {
		if got := bytesText(n); got != want {
			t.Errorf("bytesText(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestValidCSRF(t *testing.T) {
	made := csrfToken(httptest.NewRecorder(), httptest.NewRequest("GET", "/ui/", nil))
	if !validCSRF(made) {
		t.Errorf("validCSRF(%q) = false for a token csrfToken made", made)
	}
	for _, bad := range []string{"", made[:42], made + "A", strings.Repeat("!", 43), strings.Repeat("+/", 21) + "A",
		strings.Repeat("A", 42) + "B", strings.Repeat("a", 1<<16)} {
		if validCSRF(bad) {
			t.Errorf("validCSRF(%.50q) = true", bad)
		}
	}
}

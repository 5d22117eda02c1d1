package api_test

import (
	"net/http"
	"net/netip"
	"testing"

	"github.com/refkeeper/refkeeper/api"
)

// status sends GET path with exactly the headers given (names as spelled)
// and answers the status.
func (f *fixture) status(t *testing.T, path string, headers ...[2]string) int {
	t.Helper()
	req, err := http.NewRequest("GET", f.srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header = http.Header{}
	for _, h := range headers {
		req.Header[h[0]] = append(req.Header[h[0]], h[1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

const limitedPath = p + "/pipelines/1/ref"

var bearer = [2]string{"Authorization", "Bearer " + token}

func xff(v string) [2]string { return [2]string{"X-Forwarded-For", v} }

// TestRateLimitTrustedProxies: behind a trusted proxy every client has its
// own bucket, found from the right of X-Forwarded-For; what a client puts
// in the header itself, and what an untrusted peer sends, picks no bucket.
func TestRateLimitTrustedProxies(t *testing.T) {
	// The test's requests come from 127.0.0.1: here that is the balancer.
	proxies, err := api.ParseTrustedProxies("127.0.0.0/8, ::1, 10.1.2.3")
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *api.Config) {
		c.AddressLimit = api.RateLimit{Rate: 0.001, Burst: 2}
		c.TrustedProxies = proxies
	})
	steps := []struct {
		name   string
		xff    [][2]string
		status int // 0: anything but 429
	}{
		{"client A", [][2]string{xff("203.0.113.1")}, 0},
		{"client A again", [][2]string{xff("203.0.113.1")}, 0},
		{"client A over its burst", [][2]string{xff("203.0.113.1")}, 429},
		{"client B has its own bucket", [][2]string{xff("203.0.113.2")}, 0},
		{"A spoofs an address left of its own", [][2]string{xff("198.51.100.7, 203.0.113.1")}, 429},
		{"A behind two trusted proxies", [][2]string{xff("203.0.113.1, 10.1.2.3, 127.0.0.9")}, 429},
		{"A's spoof in a header of its own", [][2]string{xff("198.51.100.8"), xff("203.0.113.1")}, 429},
		{"garbage left of A", [][2]string{xff("not-an-address, 203.0.113.1")}, 429},
		{"lower-case name is the same header", [][2]string{{"x-forwarded-for", "203.0.113.1"}}, 429},
		{"X_Forwarded_For is another header", [][2]string{xff("203.0.113.1"), {"X_Forwarded_For", "198.51.100.9"}}, 429},
		{"IPv6 client", [][2]string{xff("2001:db8:1:2::1")}, 0},
		{"the same /64", [][2]string{xff("2001:db8:1:2::ffff")}, 0},
		{"the same /64, over the burst", [][2]string{xff("2001:db8:1:2:abcd::1")}, 429},
		{"the next /64", [][2]string{xff("2001:db8:1:3::1")}, 0},
		{"IPv4-mapped IPv6 is the IPv4 client", [][2]string{xff("::ffff:203.0.113.1")}, 429},
	}
	for _, s := range steps {
		got := f.status(t, limitedPath, append(s.xff, bearer)...)
		if s.status == 429 && got != 429 || s.status == 0 && got == 429 {
			t.Errorf("%s: %d, want %s", s.name, got, map[int]string{0: "not 429", 429: "429"}[s.status])
		}
	}
	// Only the right-most untrusted entry counts: a client that makes up
	// a new address per request stays in its one bucket.
	for i := range 5 {
		if got := f.status(t, limitedPath, bearer, xff(netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String()+", 203.0.113.2")); i >= 1 && got != 429 {
			t.Errorf("made-up address %d: %d, want 429", i, got)
		}
	}
}

// TestRateLimitUntrustedPeer: when the peer is not a trusted proxy its
// X-Forwarded-For is not read at all.
func TestRateLimitUntrustedPeer(t *testing.T) {
	proxies, _ := api.ParseTrustedProxies("10.0.0.0/8")
	f := newFixture(t, func(c *api.Config) {
		c.AddressLimit = api.RateLimit{Rate: 0.001, Burst: 2}
		c.TrustedProxies = proxies
	})
	codes := []int{}
	for _, a := range []string{"203.0.113.1", "203.0.113.2", "203.0.113.3", "10.0.0.1"} {
		codes = append(codes, f.status(t, limitedPath, bearer, xff(a)))
	}
	if codes[1] == 429 || codes[2] != 429 || codes[3] != 429 {
		t.Fatalf("codes = %v: spoofed X-Forwarded-For from an untrusted peer opened buckets", codes)
	}
}

// TestRateLimitTokens: only a valid token (an API token or a signed fetch
// token) has a bucket; an invalid one is a 401 each time and counts
// against its address.
func TestRateLimitTokens(t *testing.T) {
	f := newFixture(t, func(c *api.Config) { c.TokenLimit = api.RateLimit{Rate: 0.001, Burst: 2} })
	pin := f.do(t, "PUT", p+"/pipelines/7/ref", `{"merge_request_iid":12}`) // the API token's first request
	if pin.status != 201 {
		t.Fatalf("pin = %d %s", pin.status, pin.raw)
	}
	for i := range 5 {
		if got := f.status(t, limitedPath, [2]string{"Authorization", "Bearer made-up-token-0123456789"}); got != 401 {
			t.Fatalf("invalid token, request %d: %d, want 401 every time (no bucket of its own)", i, got)
		}
	}
	if got := f.status(t, limitedPath, bearer); got == 429 {
		t.Fatalf("API token, second request: 429")
	}
	if got := f.status(t, limitedPath, bearer); got != 429 {
		t.Fatalf("API token over its burst: %d, want 429", got)
	}
	scoped, _ := pin.body["fetch_token"].(string)
	advert := "/git/group/app.git/info/refs?service=git-upload-pack"
	fetch := [2]string{"Authorization", "Bearer " + scoped}
	codes := []int{f.status(t, advert, fetch), f.status(t, advert, fetch), f.status(t, advert, fetch)}
	if codes[0] != 200 || codes[1] != 200 || codes[2] != 429 {
		t.Fatalf("fetch token = %v, want its own bucket of 2", codes)
	}

	g := newFixture(t, func(c *api.Config) {
		c.AddressLimit = api.RateLimit{Rate: 0.001, Burst: 3}
		c.TokenLimit = api.RateLimit{Rate: 0.001, Burst: 100}
	})
	codes = nil
	for i := range 4 {
		codes = append(codes, g.status(t, limitedPath, [2]string{"Authorization", "Bearer made-up-" + string(rune('a'+i)) + "-0123456789"}))
	}
	if codes[2] != 401 || codes[3] != 429 {
		t.Fatalf("made-up tokens from one address = %v, want 401 until the address's burst, then 429", codes)
	}
}

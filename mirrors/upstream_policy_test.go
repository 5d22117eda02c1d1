package mirrors

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/refkeeper/refkeeper/gitops"
	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/testdata"
)

func mustPolicy(t *testing.T, list string) *UpstreamPolicy {
	t.Helper()
	p, err := ParseUpstreamPolicy(list)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseUpstreamPolicyRefusesBadPatterns(t *testing.T) {
	for _, bad := range []string{"github.com", "ftp://x", "ssh://git.example.com", "http://", "http://h:0", "http://h:99999",
		"http://h:x", "http://a*b", "file://relative", "file:///srv/../etc/", "https://*.", "http://h/a/../b"} {
		var pe *UpstreamPolicyError
		if _, err := ParseUpstreamPolicy(bad); !errors.As(err, &pe) {
			t.Errorf("ParseUpstreamPolicy(%q) = %v, want an UpstreamPolicyError", bad, err)
		}
	}
	if _, err := ParseUpstreamPolicy("https://*, http://127.0.0.1:*,https://*.example.com:8443/group/,file:///srv/git/,http://[::1]:*"); err != nil {
		t.Fatal(err)
	}
}

// What each policy allows, and what it hands git: only addresses that are
// checked, internal ones only through a pattern naming the host.
func TestUpstreamPolicyCheck(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		policy, upstream string
		allowed          bool
		resolve          string // for allowed: the pinned resolution's address part, "" for none
	}{
		// the default: https, public addresses
		{"", "https://93.184.216.34/group/app.git", true, ""},
		{"", "http://93.184.216.34/group/app.git", false, ""},
		{"", "https://127.0.0.1/group/app.git", false, ""},
		{"", "https://169.254.169.254/latest/meta-data", false, ""},
		{"", "https://10.1.2.3/x.git", false, ""},
		{"", "https://192.168.1.1/x.git", false, ""},
		{"", "https://172.16.0.1/x.git", false, ""},
		{"", "https://[::1]/x.git", false, ""},
		{"", "https://[fc00::1]/x.git", false, ""},
		{"", "https://[fe80::1]/x.git", false, ""},
		{"", "https://[::ffff:127.0.0.1]/x.git", false, ""},
		{"", "https://0.0.0.0/x.git", false, ""},
		// special-purpose ranges and IPv4 carried in IPv6
		{"", "https://0.0.0.1/x.git", false, ""},
		{"", "https://100.64.0.1/x.git", false, ""},           // carrier-grade NAT, tailnets
		{"", "https://100.100.100.200/x.git", false, ""},      // a cloud's metadata service
		{"", "https://198.18.0.1/x.git", false, ""},           // benchmarking
		{"", "https://240.0.0.1/x.git", false, ""},            // reserved
		{"", "https://[::127.0.0.1]/x.git", false, ""},        // IPv4-compatible
		{"", "https://[64:ff9b::a9fe:a9fe]/x.git", false, ""}, // NAT64 of 169.254.169.254
		{"", "https://[2002:7f00:1::]/x.git", false, ""},      // 6to4 of 127.0.0.1
		{"", "https://[fec0::1]/x.git", false, ""},            // site-local
		{"", "https://224.0.0.1/x.git", false, ""},
		{"", "https://localhost/x.git", false, ""},          // resolves to loopback through *
		{"", "https://127.1/x.git", false, ""},              // an address in disguise, not a name
		{"", "https://0x7f.0.0.1/x.git", false, ""},         // the same
		{"", "https://localhost./x.git", false, ""},         // a trailing dot that curl and the resolver read apart
		{"", "file:///etc/passwd", false, ""},               // no file pattern
		{"", "https://93.184.216.34/a/../b.git", false, ""}, // folded by curl after the match
		// a pattern naming the host allows its internal addresses
		{"http://127.0.0.1:*", "http://127.0.0.1:8080/x.git", true, ""},
		{"http://127.0.0.1:*", "http://localhost:8080/x.git", false, ""},
		{"http://127.0.0.1:*", "https://127.0.0.1:8080/x.git", false, ""},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8081/x.git", false, ""},
		{"http://localhost:*", "http://localhost:8080/x.git", true, "127.0.0.1"},
		{"http://*", "http://localhost:8080/x.git", false, ""},
		{"http://*:*", "http://localhost:8080/x.git", false, ""},
		{"http://*:*", "http://169.254.169.254:80/x.git", false, ""},
		{"https://*,http://169.254.169.254", "http://169.254.169.254/x.git", true, ""},
		// wildcards and prefixes
		{"https://*.example.com", "https://93.184.216.34/x.git", false, ""},
		{"https://1.1.1.1/group/", "https://1.1.1.1/group/app.git", true, ""},
		{"https://1.1.1.1/group/", "https://1.1.1.1/other/app.git", false, ""},
		{"https://1.1.1.1/group/", "https://1.1.1.1/group/../other/app.git", false, ""},
		{"https://1.1.1.1/group/", "https://1.1.1.1/group/%2e%2e/other/app.git", false, ""},
		{"https://1.1.1.1:8443", "https://1.1.1.1:8443/x.git", true, ""},
		{"https://1.1.1.1:8443", "https://1.1.1.1/x.git", false, ""},
	} {
		policy := (*UpstreamPolicy)(nil)
		if tc.policy != "" {
			policy = mustPolicy(t, tc.policy)
		}
		got, err := policy.Check(ctx, tc.upstream)
		if tc.allowed != (err == nil) {
			t.Errorf("policy %q, %s: %v, want allowed %v", tc.policy, tc.upstream, err, tc.allowed)
			continue
		}
		if !tc.allowed {
			var na *UpstreamNotAllowedError
			if !errors.As(err, &na) {
				t.Errorf("policy %q, %s: %T %v, want an UpstreamNotAllowedError", tc.policy, tc.upstream, err, err)
			}
			continue
		}
		if tc.resolve == "" && len(got.Resolve) != 0 {
			t.Errorf("policy %q, %s: resolve %q for an address", tc.policy, tc.upstream, got.Resolve)
		}
		if tc.resolve != "" && (len(got.Resolve) != 1 || !strings.Contains(got.Resolve[0], tc.resolve) || !strings.HasPrefix(got.Resolve[0], "localhost:8080:")) {
			t.Errorf("policy %q, %s: resolve %q, want localhost:8080 pinned to %s", tc.policy, tc.upstream, got.Resolve, tc.resolve)
		}
	}
}

// file:///dir/ allows repositories below dir, however the path is spelled
// or linked: the resolved path is what git gets.
func TestUpstreamPolicyFile(t *testing.T) {
	ctx := context.Background()
	allowed := t.TempDir()
	outside := t.TempDir()
	repo := filepath.Join(allowed, "group", "app.git")
	secret := filepath.Join(outside, "secret.git")
	for _, d := range []string{repo, secret} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(allowed, "gitfile.git"), []byte("gitdir: "+secret+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(allowed, "link.git")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(allowed, filepath.Join(outside, "in")); err != nil {
		t.Fatal(err)
	}
	policy := mustPolicy(t, "file://"+allowed+"/")
	got, err := policy.Check(ctx, "file://"+repo)
	if err != nil {
		t.Fatal(err)
	}
	real, _ := filepath.EvalSymlinks(repo)
	if got.URL != "file://"+real {
		t.Errorf("git gets %s, want the resolved %s", got.URL, "file://"+real)
	}
	// Reached through a link into the allowed directory: allowed, as what
	// the link points to.
	if got, err := policy.Check(ctx, "file://"+filepath.Join(outside, "in", "group", "app.git")); err != nil || got.URL != "file://"+real {
		t.Errorf("through a link into it: %v %v", got, err)
	}
	for _, bad := range []string{
		"file://" + secret,
		"file://" + filepath.Join(allowed, "link.git"), // a link out of it
		"file://" + allowed + "/../" + filepath.Base(outside) + "/secret.git",
		"file://" + allowed, // the directory itself
		"file://" + filepath.Join(allowed, "gitfile.git"), // "gitdir: <outside>", which git follows
		"file://" + filepath.Join(allowed, "none.git"),
		"file:///etc/passwd",
		"file://localhost" + repo,
	} {
		var na *UpstreamNotAllowedError
		if _, err := policy.Check(ctx, bad); !errors.As(err, &na) {
			t.Errorf("%s: %v, want not allowed", bad, err)
		}
	}
	if _, err := (*UpstreamPolicy)(nil).Check(ctx, "file://"+repo); err == nil {
		t.Error("the default policy allows a file upstream")
	}
}

// newAttackProjects is a Projects with policy over a fresh repos root, the
// credentials file creds (may be empty), logging into logs.
func newAttackProjects(t *testing.T, policy, creds string) *Projects {
	t.Helper()
	root := &gitops.Root{Dir: t.TempDir()}
	t.Cleanup(root.Close)
	p := &Projects{Repos: root, Fetcher: &gitops.Fetcher{Root: root}, UpstreamTimeout: 20 * time.Second}
	if policy != "" {
		p.Policy = mustPolicy(t, policy)
	}
	if creds != "" {
		p.Credentials = &CredentialFile{Path: creds}
	}
	t.Cleanup(p.Close)
	return p
}

// awaitSettled waits until the mirror's first clone ended and answers it.
func awaitSettled(t *testing.T, p *Projects, name refs.Project) ProjectInfo {
	t.Helper()
	var pi ProjectInfo
	pollUntil(t, "the clone's end", func() bool {
		var err error
		pi, err = p.Get(context.Background(), name)
		return err == nil && pi.State != ProjectCloning
	})
	return pi
}

// The registrations of issue 16: none of them reaches the address it names,
// and what the caller reads back is one message whatever the reason.
func TestRegisterRefusesUpstreamsOutsideThePolicy(t *testing.T) {
	ctx := context.Background()
	u := testdata.StartUpstream(t)
	localhostURL := strings.Replace(u.URL(), "127.0.0.1", "localhost", 1)
	for _, tc := range []struct{ name, policy, upstream string }{
		{"a file anywhere, default policy", "", "file://" + u.Repo.Dir},
		{"the metadata service through *", "http://*", "http://169.254.169.254/latest/meta-data"},
		{"a loopback service, default policy", "", u.URL()},
		{"a loopback service over https, default policy", "", strings.Replace(u.URL(), "http:", "https:", 1)},
		{"a name resolving to loopback through *", "http://*:*", localhostURL},
		{"loopback allowed by address, reached by name", "http://127.0.0.1:*", localhostURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newAttackProjects(t, tc.policy, "")
			_, _, err := p.Register(ctx, MirrorRequest{Project: "mirrors/x", Upstream: tc.upstream})
			var na *UpstreamNotAllowedError
			if !errors.As(err, &na) {
				t.Fatalf("Register = %v, want UpstreamNotAllowedError", err)
			}
			if want := "is not allowed by the server's upstream policy"; !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "127.0.0.1 through") {
				t.Errorf("the message tells more than 'not allowed': %v", err)
			}
			if _, err := p.Repos.Project("mirrors/x"); !refs.IsProjectNotFound(err) {
				t.Errorf("a refused registration left a project: %v", err)
			}
			if staged, _ := p.Repos.StagedProjects(ctx); len(staged) != 0 {
				t.Errorf("a refused registration left a staged mirror: %v", staged)
			}
		})
	}
	if n := u.Fetches() + u.Refused(); n != 0 {
		t.Errorf("the loopback upstream was reached %d times", n)
	}
}

// An upstream that redirects is not followed, even to an allowed host:
// the clone fails as "not allowed" and the target sees nothing.
func TestCloneDoesNotFollowRedirects(t *testing.T) {
	u := testdata.StartUpstream(t)
	rd := testdata.StartRedirector(t, u.BaseURL())
	p := newAttackProjects(t, testdata.LoopbackUpstreams, "")
	if _, _, err := p.Register(context.Background(), MirrorRequest{Project: "mirrors/x", Upstream: rd.URL()}); err != nil {
		t.Fatal(err)
	}
	pi := awaitSettled(t, p, "mirrors/x")
	if pi.State != ProjectFailed || !strings.Contains(pi.LastError, "not allowed") {
		t.Errorf("clone through a redirect: state %s, last_error %q; want failed, not allowed", pi.State, pi.LastError)
	}
	if rd.Requests() == 0 {
		t.Error("the redirector was never asked: the test proves nothing")
	}
	if n := u.Fetches() + u.Refused(); n != 0 {
		t.Errorf("the redirect's target was reached %d times", n)
	}
}

// The attack of issue 15: whatever a caller registers, a server of its own
// never receives the service's credential. The last case, a credential
// that is for the trap, shows the trap would have recorded it.
func TestCredentialNeverReachesAnotherServer(t *testing.T) {
	ctx := context.Background()
	trap := testdata.StartCredentialTrap(t)
	rd := testdata.StartRedirector(t, trap.Host())
	trapHostPort := strings.TrimPrefix(trap.Host(), "http://")
	creds := filepath.Join(t.TempDir(), "credentials.json")
	writeFile(t, creds, `{
		"elsewhere": {"username": "bot", "password": "leaked-elsewhere", "hosts": ["github.com"]},
		"https-only": {"username": "bot", "password": "leaked-https-only", "hosts": ["`+trapHostPort+`"]},
		"acme": {"username": "bot", "password": "leaked-acme", "hosts": ["`+trap.Host()+`"], "projects": ["acme/*"]},
		"redirector": {"username": "bot", "password": "leaked-redirect", "hosts": ["`+rd.Host()+`"]}
	}`, time.Now())
	for _, tc := range []struct {
		name, project, upstream, credential string
		refusedAtRegistration               bool
	}{
		{"a credential for other hosts", "mirrors/a", trap.URL(), "elsewhere", true},
		{"an https credential over http", "mirrors/b", trap.URL(), "https-only", true},
		{"a credential for another project", "mirrors/c", trap.URL(), "acme", true},
		{"a redirect to the trap", "mirrors/d", strings.Replace(rd.URL(), "group/app", "x/y", 1), "redirector", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newAttackProjects(t, testdata.LoopbackUpstreams, creds)
			_, _, err := p.Register(ctx, MirrorRequest{Project: refs.Project(tc.project), Upstream: tc.upstream, Credential: tc.credential})
			if tc.refusedAtRegistration {
				if !IsUpstreamNotAllowed(err) {
					t.Fatalf("Register = %v, want UpstreamNotAllowedError", err)
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if pi := awaitSettled(t, p, refs.Project(tc.project)); pi.State != ProjectFailed {
					t.Fatalf("clone: %s %q", pi.State, pi.LastError)
				}
			}
		})
	}
	if got := trap.Authorizations(); len(got) != 0 {
		t.Fatalf("the trap received credentials: %q", got)
	}
	if rd.Requests() == 0 {
		t.Error("the redirector was never asked")
	}
	// The control: the same trap, named in a credential's hosts for this
	// project, does receive it.
	p := newAttackProjects(t, testdata.LoopbackUpstreams, creds)
	if _, _, err := p.Register(ctx, MirrorRequest{Project: "acme/app", Upstream: trap.URL(), Credential: "acme"}); err != nil {
		t.Fatal(err)
	}
	awaitSettled(t, p, "acme/app")
	if got := trap.Authorizations(); !slices.ContainsFunc(got, func(a string) bool { return strings.HasPrefix(a, "Basic ") }) {
		t.Fatalf("the control credential never reached the trap (%q): the trap records nothing", got)
	}
}

// The policy holds at every fetch, not only at registration: a mirror
// registered under a policy that the server no longer has is not fetched.
func TestFetchForPinChecksThePolicyAgain(t *testing.T) {
	ctx := context.Background()
	u := testdata.StartUpstream(t)
	creds := u.CredentialsFile(t, "up")
	p := newAttackProjects(t, testdata.LoopbackUpstreams, creds)
	if _, _, err := p.Register(ctx, MirrorRequest{Project: "mirrors/gh", Upstream: u.URL(), Host: "github", Credential: "up"}); err != nil {
		t.Fatal(err)
	}
	if pi := awaitSettled(t, p, "mirrors/gh"); pi.State != ProjectReady {
		t.Fatalf("clone: %s %q", pi.State, pi.LastError)
	}
	before := u.Fetches() + u.Refused()
	// The same repos root served after a restart with the default policy.
	p = &Projects{Repos: p.Repos, Fetcher: &gitops.Fetcher{Root: p.Repos}, Credentials: p.Credentials}
	repo, err := p.Repos.Open("mirrors/gh")
	if err != nil {
		t.Fatal(err)
	}
	err = p.FetchForPin(ctx, repo, refs.PinRequest{Project: "mirrors/gh"}, "refs/pull/1/merge")
	if !IsUpstreamNotAllowed(err) {
		t.Fatalf("FetchForPin = %v, want UpstreamNotAllowedError", err)
	}
	if n := u.Fetches() + u.Refused() - before; n != 0 {
		t.Errorf("the upstream was reached %d times after the policy stopped allowing it", n)
	}
}

// startDNS serves A records for names over UDP on loopback, as a resolver
// of the network would, and answers a resolver that asks it alone.
func startDNS(t *testing.T, records map[string][]netip.Addr) *net.Resolver {
	t.Helper()
	conn, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.EnableCompression()
			_ = b.StartQuestions()
			_ = b.Question(q)
			_ = b.StartAnswers()
			name := strings.TrimSuffix(q.Name.String(), ".")
			for _, a := range records[name] {
				rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
				switch {
				case q.Type == dnsmessage.TypeA && a.Is4():
					_ = b.AResource(rh, dnsmessage.AResource{A: a.As4()})
				case q.Type == dnsmessage.TypeAAAA && a.Is6():
					_ = b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
				}
			}
			msg, err := b.Finish()
			if err == nil {
				_, _ = conn.WriteTo(msg, from)
			}
		}
	}()
	addr := conn.LocalAddr().String()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", addr)
	}}
}

// A name whose DNS answer is internal is refused through "*" (a public
// looking name mapped to a private address, or with one internal address
// among public ones); named by a pattern it is allowed, and git is handed
// exactly the addresses the answer held.
func TestUpstreamPolicyChecksWhatTheNameResolvesTo(t *testing.T) {
	ctx := context.Background()
	resolver := startDNS(t, map[string][]netip.Addr{
		"public.example.org":   {netip.MustParseAddr("93.184.216.34")},
		"private.example.org":  {netip.MustParseAddr("10.0.0.5")},
		"mixed.example.org":    {netip.MustParseAddr("93.184.216.34"), netip.MustParseAddr("192.168.1.20")},
		"metadata.example.org": {netip.MustParseAddr("169.254.169.254")},
		"v6.example.org":       {netip.MustParseAddr("fd00::1")},
	})
	policy := mustPolicy(t, "https://*,https://private.example.org")
	policy.Resolver = resolver
	got, err := policy.Check(ctx, "https://public.example.org/group/app.git")
	if err != nil || !slices.Equal(got.Resolve, []string{"public.example.org:443:93.184.216.34"}) {
		t.Errorf("public name: %v %v, want it pinned to 93.184.216.34", got, err)
	}
	got, err = policy.Check(ctx, "https://private.example.org/group/app.git")
	if err != nil || !slices.Equal(got.Resolve, []string{"private.example.org:443:10.0.0.5"}) {
		t.Errorf("private name named by a pattern: %v %v, want it pinned to 10.0.0.5", got, err)
	}
	for _, name := range []string{"mixed", "metadata", "v6"} {
		if _, err := policy.Check(ctx, "https://"+name+".example.org/group/app.git"); !IsUpstreamNotAllowed(err) {
			t.Errorf("%s.example.org through *: %v, want not allowed", name, err)
		}
	}
	var unavail *gitops.UpstreamUnavailableError
	if _, err := policy.Check(ctx, "https://none.example.org/x.git"); !errors.As(err, &unavail) {
		t.Errorf("a name that does not resolve: %v, want UpstreamUnavailableError", err)
	}
	// Registered, such a name is a retryable 503 upstream_unavailable (the
	// mirrors' own error type, which api maps), never a 500.
	p := newAttackProjects(t, "https://*", "")
	p.Policy.Resolver = resolver
	_, _, err = p.Register(ctx, MirrorRequest{Project: "mirrors/x", Upstream: "https://none.example.org/x.git"})
	var mirrorsUnavail *UpstreamUnavailableError
	if !errors.As(err, &mirrorsUnavail) {
		t.Errorf("Register of a name that does not resolve = %T %v, want *mirrors.UpstreamUnavailableError", err, err)
	}
}

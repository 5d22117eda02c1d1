package mirrors

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/refkeeper/refkeeper/gitops"
)

// DefaultUpstreamAllow is --upstream-allow's default: any https host whose
// addresses are public.
const DefaultUpstreamAllow = "https://*"

// UpstreamPolicy is --upstream-allow: the upstreams a mirror may have, as
// patterns scheme://host[:port][/path-prefix]. Host "*" is any host,
// "*.example.com" any host below example.com, anything else that host
// alone; port "*" is any port, none the scheme's own. file:///dir/ allows
// the local repositories below dir (after symbolic links are resolved).
//
// Whoever may register a mirror chooses its URL, and the service connects
// to it from inside the network: so a host's addresses are resolved here,
// checked, and handed to git pinned (Check's answer), and an address that
// is loopback, private, link-local, multicast or unspecified is allowed
// only through a pattern that names the host itself, never through "*".
// The zero value (and nil) is the default policy.
type UpstreamPolicy struct {
	patterns []upstreamPattern
	// Resolver looks hosts up; nil: net.DefaultResolver. Tests point it
	// at a DNS server of their own.
	Resolver *net.Resolver
}

// upstreamPattern is one parsed pattern.
type upstreamPattern struct {
	raw    string
	scheme string // http, https or file
	host   string // lower case; "*", "*.suffix" or a host (an IP without brackets)
	port   string // "*", digits, or "" (the scheme's own)
	prefix string // path prefix; "" for any path. For file, a clean absolute directory.
}

// UpstreamNotAllowedError is an upstream that --upstream-allow does not
// allow, or a credential not meant for it or its project. Its message is
// the same whatever the reason (a pattern that does not match, an address
// class, a redirect), so that what a caller reads of it tells nothing about
// the network behind the service; Detail, for the server's log, says which.
type UpstreamNotAllowedError struct {
	Upstream string
	Detail   string
}

func (e *UpstreamNotAllowedError) Error() string {
	return fmt.Sprintf("upstream %s is not allowed by the server's upstream policy (--upstream-allow) or credentials", e.Upstream)
}

// UpstreamPolicyError is a pattern of --upstream-allow that is not
// scheme://host[:port][/path-prefix].
type UpstreamPolicyError struct {
	Pattern string
	Reason  string
}

func (e *UpstreamPolicyError) Error() string {
	return fmt.Sprintf("upstream pattern %q: %s", e.Pattern, e.Reason)
}

// ParseUpstreamPolicy parses the comma-separated patterns of
// --upstream-allow; empty entries are skipped, and no pattern at all allows
// nothing.
func ParseUpstreamPolicy(list string) (*UpstreamPolicy, error) {
	p := &UpstreamPolicy{patterns: []upstreamPattern{}} // not nil: nil is the default
	for _, raw := range strings.Split(list, ",") {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			continue
		}
		pat, err := parseUpstreamPattern(raw)
		if err != nil {
			return nil, err
		}
		p.patterns = append(p.patterns, pat)
	}
	return p, nil
}

func parseUpstreamPattern(raw string) (upstreamPattern, error) {
	bad := func(reason string) (upstreamPattern, error) {
		return upstreamPattern{}, &UpstreamPolicyError{Pattern: raw, Reason: reason}
	}
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return bad("must be scheme://host[:port][/path-prefix]")
	}
	pat := upstreamPattern{raw: raw, scheme: strings.ToLower(scheme)}
	switch pat.scheme {
	case "file":
		if !strings.HasPrefix(rest, "/") || hasDotSegment(rest) || strings.Contains(rest, "//") {
			return bad("a file pattern must be file:///absolute/dir/ with no . or .. in it")
		}
		pat.prefix = path.Clean(rest)
		return pat, nil
	case "http", "https":
	default:
		return bad("scheme must be http, https or file")
	}
	hostport, prefix, _ := strings.Cut(rest, "/")
	if prefix != "" {
		pat.prefix = "/" + prefix
		if hasDotSegment(pat.prefix) {
			return bad("the path prefix must not hold . or .. segments")
		}
	}
	host, port := hostport, ""
	if i := strings.LastIndexByte(hostport, ':'); i >= 0 && !strings.HasSuffix(hostport, "]") {
		host, port = hostport[:i], hostport[i+1:]
		if port != "*" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || port[0] == '0' {
				return bad("the port must be *, or a number from 1 to 65535")
			}
		}
	}
	host = strings.ToLower(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"))
	switch {
	case host == "*":
	case strings.HasPrefix(host, "*."):
		if !validHostname(host[2:]) {
			return bad("*.domain needs a host name after the *.")
		}
	case validHostname(host):
	default:
		a, err := netip.ParseAddr(host)
		if err != nil || a.Zone() != "" {
			return bad("the host must be *, *.domain, a host name or an IP address")
		}
		host = a.Unmap().String()
	}
	pat.host, pat.port = host, port
	return pat, nil
}

// validHostname accepts the host names git is handed: ASCII letters,
// digits, '-' and '.', no empty label, no trailing dot, and a last label
// that is not numeric (so that "127.1" or "0x7f.1", which resolvers read as
// addresses, are not names here: they are refused, not resolved two ways).
func validHostname(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	labels := strings.Split(h, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	last := strings.ToLower(labels[len(labels)-1])
	if strings.HasPrefix(last, "0x") {
		return false
	}
	return strings.Trim(last, "0123456789") != ""
}

// hasDotSegment reports whether a URL path has a "." or ".." segment, which
// git's HTTP library would fold away after the prefix was matched.
func hasDotSegment(p string) bool {
	for _, seg := range strings.Split(p, "/") {
		if seg == "." || seg == ".." {
			return true
		}
	}
	return false
}

// defaultPort is the port of an http or https URL that names none.
func defaultPort(scheme string) string {
	if scheme == "http" {
		return "80"
	}
	return "443"
}

// matches reports whether the pattern covers an http(s) upstream of host
// (lower case, without brackets), port (never empty) and path.
func (pat upstreamPattern) matches(scheme, host, port, urlPath string) bool {
	if pat.scheme != scheme {
		return false
	}
	switch {
	case pat.host == "*":
	case strings.HasPrefix(pat.host, "*."):
		if !strings.HasSuffix(host, pat.host[1:]) {
			return false
		}
	default:
		if pat.host != host {
			return false
		}
	}
	want := pat.port
	if want == "" {
		want = defaultPort(scheme)
	}
	if want != "*" && want != port {
		return false
	}
	return pathUnder(urlPath, pat.prefix)
}

// pathUnder reports whether p starts with prefix, as written: a prefix
// "/group/" covers that directory, "/group" also "/group-other".
func pathUnder(p, prefix string) bool {
	return prefix == "" || strings.HasPrefix(p, prefix)
}

// literal reports whether the pattern names one host itself.
func (pat upstreamPattern) literal() bool {
	return pat.host != "*" && !strings.HasPrefix(pat.host, "*.")
}

// CheckedUpstream is an upstream the policy allowed: the URL git is given
// (for file, the resolved path) and, for http(s), the addresses it may
// connect to, pinned.
type CheckedUpstream struct {
	URL     string
	Resolve []string
}

// Check decides whether the service may fetch from rawURL (a URL that
// ParseUpstream accepted) now: the URL must match a pattern, and every
// address its host resolves to must be one the pattern allows. The answer
// is what git must be handed so that it connects to exactly those
// addresses. A refusal is *UpstreamNotAllowedError; a host that does not
// resolve is *gitops.UpstreamUnavailableError.
func (p *UpstreamPolicy) Check(ctx context.Context, rawURL string) (CheckedUpstream, error) {
	refuse := func(detail string) (CheckedUpstream, error) {
		return CheckedUpstream{}, &UpstreamNotAllowedError{Upstream: rawURL, Detail: detail}
	}
	u, err := url.Parse(rawURL)
	if err != nil || u.User != nil || u.RawQuery != "" || u.Fragment != "" || u.Opaque != "" {
		return refuse("not a plain URL")
	}
	patterns := p.effective()
	if u.Scheme == "file" {
		return p.checkFile(u, rawURL, patterns)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return refuse("scheme " + u.Scheme)
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = defaultPort(u.Scheme)
	}
	addr, perr := netip.ParseAddr(host)
	isIP := perr == nil
	if isIP && addr.Zone() != "" || !isIP && !validHostname(host) {
		return refuse("not a host name git can be pinned to")
	}
	if isIP {
		addr = addr.Unmap()
		host = addr.String() // as patterns write it
	}
	if hasDotSegment(u.Path) || hasDotSegment(u.EscapedPath()) {
		return refuse("a . or .. path segment")
	}
	var matched []upstreamPattern
	for _, pat := range patterns {
		if pat.scheme != "file" && pat.matches(u.Scheme, host, port, u.Path) {
			matched = append(matched, pat)
		}
	}
	if len(matched) == 0 {
		return refuse("no pattern matches")
	}
	var addrs []netip.Addr
	if isIP {
		addrs = []netip.Addr{addr}
	} else {
		found, err := p.resolver().LookupNetIP(ctx, "ip", host)
		if err != nil || len(found) == 0 {
			return CheckedUpstream{}, &gitops.UpstreamUnavailableError{Upstream: rawURL, Reason: "its host does not resolve", Err: err}
		}
		for _, a := range found {
			addrs = append(addrs, a.Unmap())
		}
	}
	literal := false
	for _, pat := range matched {
		literal = literal || pat.literal()
	}
	for _, a := range addrs {
		if internalAddr(a) && !literal {
			return refuse("resolves to an internal address " + a.String() + " through a wildcard pattern")
		}
	}
	out := CheckedUpstream{URL: rawURL}
	if !isIP { // an address is connected to as it is
		// host:port:addr[,addr]; IPv6 addresses in brackets.
		list := make([]string, len(addrs))
		for i, a := range addrs {
			list[i] = a.String()
			if a.Is6() {
				list[i] = "[" + list[i] + "]"
			}
		}
		out.Resolve = []string{host + ":" + port + ":" + strings.Join(list, ",")}
	}
	return out, nil
}

// checkFile allows file:///path when, symbolic links resolved, it lies
// below the resolved directory of a file pattern. git is handed the
// resolved path, so a link changed after the check leads nowhere else.
func (p *UpstreamPolicy) checkFile(u *url.URL, rawURL string, patterns []upstreamPattern) (CheckedUpstream, error) {
	refuse := func(detail string) (CheckedUpstream, error) {
		return CheckedUpstream{}, &UpstreamNotAllowedError{Upstream: rawURL, Detail: detail}
	}
	if u.Host != "" || !path.IsAbs(u.Path) || hasDotSegment(u.Path) {
		return refuse("not file:///absolute/path")
	}
	real, err := filepath.EvalSymlinks(filepath.Clean(filepath.FromSlash(u.Path)))
	if err != nil {
		// Absent or unreadable: said the same way as not allowed, so
		// that registrations cannot probe the server's file system.
		return refuse("cannot be resolved")
	}
	// A repository is a directory: a file there may be a gitfile
	// ("gitdir: /elsewhere"), which git follows out of the allowed place.
	if st, err := os.Stat(real); err != nil || !st.IsDir() {
		return refuse("not a directory")
	}
	for _, pat := range patterns {
		if pat.scheme != "file" {
			continue
		}
		dir, err := filepath.EvalSymlinks(filepath.FromSlash(pat.prefix))
		if err != nil {
			continue
		}
		if rel, err := filepath.Rel(dir, real); err == nil && rel != "." && !strings.HasPrefix(rel, ".."+string(os.PathSeparator)) && rel != ".." {
			return CheckedUpstream{URL: "file://" + filepath.ToSlash(real)}, nil
		}
	}
	return refuse("not below an allowed directory")
}

func (p *UpstreamPolicy) effective() []upstreamPattern {
	if p == nil || p.patterns == nil {
		def, _ := parseUpstreamPattern(DefaultUpstreamAllow)
		return []upstreamPattern{def}
	}
	return p.patterns
}

func (p *UpstreamPolicy) resolver() *net.Resolver {
	if p != nil && p.Resolver != nil {
		return p.Resolver
	}
	return net.DefaultResolver
}

// internalAddr reports whether a is an address a wildcard pattern never
// reaches: loopback, private (RFC 1918, fc00::/7), link-local (with
// 169.254.169.254, the cloud metadata service), multicast, unspecified,
// and the special-purpose ranges of specialPurpose.
func internalAddr(a netip.Addr) bool {
	if a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() || !a.IsValid() {
		return true
	}
	for _, p := range specialPurpose {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// specialPurpose are the ranges (IANA's special-purpose registries) that
// are no public internet host, or that carry an IPv4 address inside IPv6:
// a network a wildcard must not reach either (carrier-grade NAT and
// tailnets, a cloud's metadata service at 100.100.100.200, benchmarking,
// reserved space, NAT64, 6to4, Teredo, site-local).
var specialPurpose = func() []netip.Prefix {
	var out []netip.Prefix
	for _, s := range []string{
		"0.0.0.0/8", "100.64.0.0/10", "192.0.0.0/24", "192.0.2.0/24", "198.18.0.0/15",
		"198.51.100.0/24", "203.0.113.0/24", "240.0.0.0/4",
		"::/96", "::ffff:0:0:0/96", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64",
		"2001::/32", "2001:db8::/32", "2002::/16", "fec0::/10",
	} {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}()

// IsUpstreamNotAllowed reports whether err is a refusal of the policy.
func IsUpstreamNotAllowed(err error) bool {
	var na *UpstreamNotAllowedError
	return errors.As(err, &na)
}

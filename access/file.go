package access

import (
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"

	"github.com/refkeeper/refkeeper/refs"
	"github.com/refkeeper/refkeeper/strictjson"
	"github.com/refkeeper/refkeeper/watchfile"
)

// Policy is one good version of the access file. The zero Policy grants
// nothing and holds no secret.
type Policy struct {
	tokens     []token
	identities []Identity
	hooks      []HookSecret
}

type token struct {
	digest [sha256.Size]byte
	grant  Grant
}

// Identity is a trusted issuer of CI jobs' ID tokens.
type Identity struct {
	Issuer   string
	Audience string
	// Kind is "gitlab" (claims project_path, pipeline_id) or "github"
	// (repository, run_id; also Gitea and Forgejo Actions).
	Kind     string
	Projects []refs.ProjectPattern
}

// HookSecret is one per-project webhook secret.
type HookSecret struct {
	// Host is "gitlab", "github" or "gitea", as the hook routes name them.
	Host     string
	Secret   string
	Projects []refs.ProjectPattern
}

// The file's JSON, decoded strictly.
type fileJSON struct {
	Tokens     []tokenJSON    `json:"tokens"`
	Identities []identityJSON `json:"identities"`
	Hooks      []hookJSON     `json:"hooks"`
}

type tokenJSON struct {
	Name     string   `json:"name"`
	SHA256   string   `json:"sha256"`
	Role     string   `json:"role"`
	Projects []string `json:"projects"`
}

type identityJSON struct {
	Issuer   string   `json:"issuer"`
	Audience string   `json:"audience"`
	Kind     string   `json:"kind"`
	Projects []string `json:"projects"`
}

type hookJSON struct {
	Host     string   `json:"host"`
	Secret   string   `json:"secret"`
	Projects []string `json:"projects"`
}

// Parse reads an access file's content. The error's text names the entry
// and field at fault, never a secret; path only labels it.
func Parse(path string, raw []byte) (*Policy, error) {
	bad := func(format string, args ...any) error {
		return &FileError{Path: path, Reason: fmt.Sprintf(format, args...)}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	var in fileJSON
	if err := dec.Decode(&in); err != nil {
		// encoding/json's messages may quote the input: say where or
		// which field, never what.
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, bad("is not valid JSON (at byte %d)", syn.Offset)
		case errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF):
			return nil, bad("is not valid JSON (it ends too early)")
		case errors.As(err, &typ):
			return nil, bad("field %q has the wrong type", typ.Field)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return nil, bad("has an %s", strings.TrimPrefix(err.Error(), "json: "))
		}
		return nil, bad(`is not a JSON object of "tokens", "identities" and "hooks"`)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, bad("has more than one JSON value")
	}
	// encoding/json took "Role" for "role" and the last of two equal keys:
	// a file must say what it is read as.
	var keyErr *strictjson.KeyError
	if err := strictjson.CheckKeys(raw, &in); errors.As(err, &keyErr) {
		return nil, bad("%s", keyErr.Error())
	}
	pol := &Policy{}
	names := map[string]bool{}
	digests := map[[sha256.Size]byte]bool{}
	for i, t := range in.Tokens {
		where := fmt.Sprintf("tokens[%d]", i)
		if t.Name == "" {
			return nil, bad("%s needs a name", where)
		}
		if names[t.Name] {
			return nil, bad("%s: the name %q is used twice", where, t.Name)
		}
		names[t.Name] = true
		d, err := hex.DecodeString(t.SHA256)
		if err != nil || len(d) != sha256.Size {
			return nil, bad("%s (%s): sha256 must be 64 hex digits, the SHA-256 of the token", where, t.Name)
		}
		var digest [sha256.Size]byte
		copy(digest[:], d)
		if digests[digest] {
			return nil, bad("%s (%s): the same sha256 is listed twice", where, t.Name)
		}
		digests[digest] = true
		role := Role(t.Role)
		switch role {
		case Admin:
			if t.Projects != nil {
				return nil, bad("%s (%s): an admin token covers every project; leave projects out", where, t.Name)
			}
		case Pipeline, Read:
			if len(t.Projects) == 0 {
				return nil, bad("%s (%s): a %s token needs projects", where, t.Name, role)
			}
		default:
			return nil, bad("%s (%s): role must be admin, pipeline or read", where, t.Name)
		}
		pats, err := patterns(t.Projects, false)
		if err != nil {
			return nil, bad("%s (%s): %v", where, t.Name, err)
		}
		pol.tokens = append(pol.tokens, token{digest: digest, grant: Grant{Name: t.Name, Role: role, Projects: pats}})
	}
	for i, id := range in.Identities {
		where := fmt.Sprintf("identities[%d]", i)
		if err := checkIssuer(id.Issuer); err != nil {
			return nil, bad("%s: issuer %v", where, err)
		}
		if id.Audience == "" {
			return nil, bad("%s: audience is required", where)
		}
		if id.Kind != "gitlab" && id.Kind != "github" {
			return nil, bad("%s: kind must be gitlab or github", where)
		}
		if len(id.Projects) == 0 {
			return nil, bad("%s: projects is required", where)
		}
		pats, err := patterns(id.Projects, false)
		if err != nil {
			return nil, bad("%s: %v", where, err)
		}
		pol.identities = append(pol.identities, Identity{Issuer: id.Issuer, Audience: id.Audience, Kind: id.Kind, Projects: pats})
	}
	for i, h := range in.Hooks {
		where := fmt.Sprintf("hooks[%d]", i)
		switch h.Host {
		case "gitlab", "github", "gitea":
		default:
			return nil, bad("%s: host must be gitlab, github or gitea", where)
		}
		if h.Secret == "" {
			return nil, bad("%s: secret is required", where)
		}
		pats, err := patterns(h.Projects, true)
		if err != nil {
			return nil, bad("%s: %v", where, err)
		}
		pol.hooks = append(pol.hooks, HookSecret{Host: h.Host, Secret: h.Secret, Projects: pats})
	}
	return pol, nil
}

// patterns parses a projects list; absent is every project where
// defaultAll, and an empty list (present but covering nothing) is refused
// as the mistake it is.
func patterns(in []string, defaultAll bool) ([]refs.ProjectPattern, error) {
	if in == nil && defaultAll {
		return []refs.ProjectPattern{"*"}, nil
	}
	if in != nil && len(in) == 0 {
		return nil, errors.New("projects is empty: leave it out or name some")
	}
	out := make([]refs.ProjectPattern, 0, len(in))
	for _, s := range in {
		p, err := refs.ParseProjectPattern(s)
		if err != nil {
			return nil, fmt.Errorf("projects: %q is not a project pattern (a name, prefix/* or *)", s)
		}
		out = append(out, p)
	}
	return out, nil
}

// checkIssuer accepts an https URL, or http on a loopback address (a
// test issuer on this machine); nothing else can be trusted for keys.
func checkIssuer(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return errors.New("must be an https URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || ip != nil && ip.IsLoopback() {
			return nil
		}
		return errors.New("must be https (http only on a loopback address)")
	}
	return errors.New("must be an https URL")
}

// Token answers the grant of a presented token. Every entry is compared,
// in constant time, whatever matches: neither the token nor which entry
// it is leaks through timing.
func (p *Policy) Token(presented string) (Grant, bool) {
	if p == nil || presented == "" {
		return Grant{}, false
	}
	d := sha256.Sum256([]byte(presented))
	found := -1
	for i := range p.tokens {
		if subtle.ConstantTimeCompare(d[:], p.tokens[i].digest[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return Grant{}, false
	}
	return p.tokens[found].grant, true
}

// HookSecrets lists the secrets of the access file that cover host's
// deliveries for project p.
func (p *Policy) HookSecrets(host string, project refs.Project) []string {
	if p == nil {
		return nil
	}
	var out []string
	for _, h := range p.hooks {
		if h.Host == host && refs.MatchAny(h.Projects, project) {
			out = append(out, h.Secret)
		}
	}
	return out
}

// CoversHost says whether any secret of the file is for host.
func (p *Policy) CoversHost(host string) bool {
	if p == nil {
		return false
	}
	for _, h := range p.hooks {
		if h.Host == host {
			return true
		}
	}
	return false
}

// Identities lists the trusted CI identity issuers.
func (p *Policy) Identities() []Identity {
	if p == nil {
		return nil
	}
	return append([]Identity(nil), p.identities...)
}

// File is the --access file: the last good Policy, read again when the
// file changes. A nil *File, or one with no Path, is an empty policy.
type File struct {
	// Path is the file.
	Path string
	// Logger receives one line per bad re-read; nil: slog.Default().
	Logger *slog.Logger

	watch watchfile.File
	mu    sync.RWMutex
	cur   *Policy
}

// Load reads the file now; cmd calls it at start-up so that a bad file
// stops the process with one line.
func (f *File) Load() error {
	_, err := f.load(true)
	return err
}

func (f *File) load(force bool) (bool, error) {
	f.watch.Path = f.Path
	changed, err := f.watch.Load(force, func(raw []byte) error {
		pol, err := Parse(f.Path, raw)
		if err != nil {
			return err
		}
		f.mu.Lock()
		f.cur = pol
		f.mu.Unlock()
		return nil
	})
	var re *watchfile.ReadError
	if errors.As(err, &re) {
		err = &FileError{Path: f.Path, Reason: re.Reason}
	}
	return changed, err
}

// Policy is the policy in force: the file as it is now when it is good,
// else the last good version (the bad read is logged once per change).
func (f *File) Policy() *Policy {
	if f == nil || f.Path == "" {
		return nil
	}
	changed, err := f.load(false)
	if changed && err != nil {
		logger := f.Logger
		if logger == nil {
			logger = slog.Default()
		}
		logger.Error("access file not reloaded: the last good version stays in force", "err", err)
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	return f.cur
}

// Token answers the grant of a presented token under the policy in force.
func (f *File) Token(presented string) (Grant, bool) { return f.Policy().Token(presented) }

// HookSecrets lists the file's secrets that cover host's deliveries for p.
func (f *File) HookSecrets(host string, p refs.Project) []string {
	return f.Policy().HookSecrets(host, p)
}

// CoversHost says whether the file has any webhook secret for host.
func (f *File) CoversHost(host string) bool { return f.Policy().CoversHost(host) }

// Identities lists the trusted CI identity issuers in force.
func (f *File) Identities() []Identity { return f.Policy().Identities() }

package hooks

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"

	"github.com/refkeeper/refkeeper/refs"
)

// Host is a kind of git host whose webhooks are understood.
type Host string

// The hosts, as they appear in routes and metrics.
const (
	GitLab Host = "gitlab"
	GitHub Host = "github"
	Gitea  Host = "gitea"
)

// Hosts lists every Host.
func Hosts() []Host { return []Host{GitLab, GitHub, Gitea} }

// Secrets are the shared secrets of each host's webhooks; an empty one
// turns that host's webhooks off.
type Secrets struct {
	// GitLabToken is what GitLab sends in X-Gitlab-Token.
	GitLabToken string
	// GitHubSecret keys GitHub's X-Hub-Signature-256.
	GitHubSecret string
	// GiteaSecret keys Gitea's X-Gitea-Signature (and Forgejo's
	// X-Forgejo-Signature).
	GiteaSecret string
}

func (s Secrets) of(h Host) string {
	switch h {
	case GitLab:
		return s.GitLabToken
	case GitHub:
		return s.GitHubSecret
	case Gitea:
		return s.GiteaSecret
	}
	return ""
}

// Signature is the lower-case hex HMAC-SHA256 of body under secret, as
// GitHub and Gitea compute it.
func Signature(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hex.EncodeToString(mac.Sum(nil))
}

// equalSecret compares in constant time, also in the length of the
// presented value (both sides are hashed first).
func equalSecret(presented, secret string) bool {
	a, b := sha256.Sum256([]byte(presented)), sha256.Sum256([]byte(secret))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// ProjectSecrets are per-project webhook secrets (the --access file's
// hooks entries); *access.File has them, wired by cmd.
type ProjectSecrets interface {
	// HookSecrets lists the secrets that cover host's deliveries for p.
	HookSecrets(host string, p refs.Project) []string
	// CoversHost says whether any secret is for host.
	CoversHost(host string) bool
}

// payloadProject reads only the project a delivery names
// (project.path_with_namespace for GitLab, repository.full_name for the
// others), before its signature is checked: one pass of encoding/json over
// a body whose size the caller has already bounded, into two strings.
// "" when the body names none or is not JSON.
func payloadProject(h Host, body []byte) string {
	var v struct {
		Project struct {
			PathWithNamespace string `json:"path_with_namespace"`
		} `json:"project"`
		Repository struct {
			FullName string `json:"full_name"`
		} `json:"repository"`
	}
	if json.Unmarshal(body, &v) != nil {
		return ""
	}
	if h == GitLab {
		return v.Project.PathWithNamespace
	}
	return v.Repository.FullName
}

// verifyAny checks a delivery against each secret in turn, all of them
// whatever matched (no secret's position leaks through timing), and
// answers which matched first; -1 and the first secret's error (or one
// saying none covers the project) when none did.
func verifyAny(h Host, secrets []string, header http.Header, body []byte) (int, error) {
	if len(secrets) == 0 {
		return -1, &UnauthorizedError{Host: h, Reason: "no webhook secret covers the project this delivery names"}
	}
	matched := -1
	var first error
	for i, secret := range secrets {
		err := verify(h, secret, header, body)
		if err == nil && matched < 0 {
			matched = i
		}
		if err != nil && first == nil {
			first = err
		}
	}
	if matched < 0 {
		return -1, first
	}
	return matched, nil
}

// verify checks a delivery by its host's scheme over the raw body.
func verify(h Host, secret string, header http.Header, body []byte) error {
	if secret == "" {
		return &UnauthorizedError{Host: h, Reason: "webhooks of this host are off"}
	}
	switch h {
	case GitLab:
		token := header.Values("X-Gitlab-Token")
		if len(token) == 0 {
			return &UnauthorizedError{Host: h, Reason: "no X-Gitlab-Token"}
		}
		if len(token) > 1 || !equalSecret(token[0], secret) {
			return &UnauthorizedError{Host: h, Reason: "wrong X-Gitlab-Token"}
		}
		return nil
	case GitHub:
		sig := header.Values("X-Hub-Signature-256")
		if len(sig) == 0 {
			return &UnauthorizedError{Host: h, Reason: "no X-Hub-Signature-256"}
		}
		hexSig, ok := strings.CutPrefix(sig[0], "sha256=")
		if len(sig) > 1 || !ok || !hmac.Equal([]byte(hexSig), []byte(Signature(secret, body))) {
			return &UnauthorizedError{Host: h, Reason: "wrong X-Hub-Signature-256"}
		}
		return nil
	case Gitea:
		// Forgejo sends both headers, older Gitea only its own: every one
		// present must be right, and one must be present.
		want := []byte(Signature(secret, body))
		seen := false
		for _, name := range []string{"X-Gitea-Signature", "X-Forgejo-Signature"} {
			sig := header.Values(name)
			if len(sig) == 0 {
				continue
			}
			if len(sig) > 1 || !hmac.Equal([]byte(sig[0]), want) {
				return &UnauthorizedError{Host: h, Reason: "wrong " + name}
			}
			seen = true
		}
		if !seen {
			return &UnauthorizedError{Host: h, Reason: "no X-Gitea-Signature"}
		}
		return nil
	}
	return &UnauthorizedError{Host: h, Reason: "unknown host"}
}

// deliveryID is the host's id of one delivery, the same across its
// redeliveries; "" when the host sent none.
func deliveryID(h Host, header http.Header) string {
	switch h {
	case GitLab:
		if id := header.Get("Idempotency-Key"); id != "" {
			return id
		}
		return header.Get("X-Gitlab-Webhook-UUID")
	case GitHub:
		return header.Get("X-GitHub-Delivery")
	case Gitea:
		if id := header.Get("X-Gitea-Delivery"); id != "" {
			return id
		}
		return header.Get("X-Forgejo-Delivery")
	}
	return ""
}

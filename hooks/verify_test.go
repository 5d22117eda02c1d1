package hooks

import (
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/refkeeper/refkeeper/testdata"
)

// GitHub's documented test vector (docs: "Validating webhook deliveries").
func TestSignatureTestVector(t *testing.T) {
	const want = "757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
	if got := Signature("It's a Secret to Everybody", []byte("Hello, World!")); got != want {
		t.Fatalf("Signature = %s, want %s", got, want)
	}
	if got := testdata.HMACHex("It's a Secret to Everybody", []byte("Hello, World!")); got != want {
		t.Fatalf("the tests' signer = %s, want %s", got, want)
	}
}

func TestVerify(t *testing.T) {
	const secret = "s3cret-for-hooks"
	body := []byte(`{"action":"closed"}`)
	good := testdata.HMACHex(secret, body)
	other := testdata.HMACHex(secret, []byte(`{"action":"opened"}`))
	h := func(kv ...string) http.Header {
		out := http.Header{}
		for i := 0; i < len(kv); i += 2 {
			out.Add(kv[i], kv[i+1])
		}
		return out
	}
	cases := []struct {
		name   string
		host   Host
		secret string
		header http.Header
		ok     bool
	}{
		{"gitlab token", GitLab, secret, h("X-Gitlab-Token", secret), true},
		{"gitlab no token", GitLab, secret, h(), false},
		{"gitlab wrong token", GitLab, secret, h("X-Gitlab-Token", secret+"x"), false},
		{"gitlab token prefix", GitLab, secret, h("X-Gitlab-Token", secret[:5]), false},
		{"gitlab two tokens", GitLab, secret, h("X-Gitlab-Token", secret, "X-Gitlab-Token", "x"), false},
		{"github signature", GitHub, secret, h("X-Hub-Signature-256", "sha256="+good), true},
		{"github no signature", GitHub, secret, h(), false},
		{"github signature of another body", GitHub, secret, h("X-Hub-Signature-256", "sha256="+other), false},
		{"github signature under another secret", GitHub, secret, h("X-Hub-Signature-256", "sha256="+testdata.HMACHex("other", body)), false},
		{"github wrong prefix", GitHub, secret, h("X-Hub-Signature-256", "sha1="+good), false},
		{"github no prefix", GitHub, secret, h("X-Hub-Signature-256", good), false},
		{"github upper-case prefix", GitHub, secret, h("X-Hub-Signature-256", "SHA256="+good), false},
		{"github upper-case hex", GitHub, secret, h("X-Hub-Signature-256", "sha256="+strings.ToUpper(good)), false},
		{"github truncated", GitHub, secret, h("X-Hub-Signature-256", "sha256="+good[:63]), false},
		{"github legacy sha1 header only", GitHub, secret, h("X-Hub-Signature", "sha1="+good), false},
		{"gitea signature", Gitea, secret, h("X-Gitea-Signature", good), true},
		{"forgejo signature alone", Gitea, secret, h("X-Forgejo-Signature", good), true},
		{"forgejo both", Gitea, secret, h("X-Gitea-Signature", good, "X-Forgejo-Signature", good), true},
		{"forgejo one wrong", Gitea, secret, h("X-Gitea-Signature", good, "X-Forgejo-Signature", other), false},
		{"gitea no signature", Gitea, secret, h(), false},
		{"gitea prefixed", Gitea, secret, h("X-Gitea-Signature", "sha256="+good), false},
		{"gitea upper-case hex", Gitea, secret, h("X-Gitea-Signature", strings.ToUpper(good)), false},
		{"gitea another body", Gitea, secret, h("X-Gitea-Signature", other), false},
		{"off", GitHub, "", h("X-Hub-Signature-256", "sha256="+testdata.HMACHex("", body)), false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			err := verify(c.host, c.secret, c.header, body)
			var ue *UnauthorizedError
			switch {
			case c.ok && err != nil:
				t.Fatalf("verify = %v, want accepted", err)
			case !c.ok && !errors.As(err, &ue):
				t.Fatalf("verify = %v, want *UnauthorizedError", err)
			}
		})
	}
}

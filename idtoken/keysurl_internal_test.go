package idtoken

import "testing"

// TestAllowedKeysURL: a trusted issuer's discovery document may send the
// key set fetch nowhere but its own host and port.
func TestAllowedKeysURL(t *testing.T) {
	for _, c := range []struct {
		iss, keys string
		ok        bool
	}{
		{"https://gitlab.com", "https://gitlab.com/oauth/discovery/keys", true},
		{"https://token.actions.githubusercontent.com", "https://token.actions.githubusercontent.com/.well-known/jwks", true},
		{"https://gitlab.example.com", "https://GitLab.example.com:443/keys", true},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080/keys", true},
		{"https://gitlab.example.com", "https://169.254.169.254/latest/meta-data/", false},
		{"https://gitlab.example.com", "https://10.0.0.1:6379/", false},
		{"https://gitlab.example.com", "https://127.0.0.1:9090/keys", false},
		{"https://gitlab.example.com", "https://[::1]/keys", false},
		{"https://gitlab.example.com", "https://localhost/keys", false},
		{"https://gitlab.example.com", "https://gitlab.example.com:8443/keys", false},
		{"https://gitlab.example.com", "http://gitlab.example.com/keys", false},
		{"https://gitlab.example.com", "http://127.0.0.1/keys", false},
		{"http://127.0.0.1:8080", "http://127.0.0.1:6379/", false},
		{"http://127.0.0.1:8080", "http://localhost:6379/", false},
		{"http://127.0.0.1:8080", "http://10.0.0.1/keys", false},
		{"http://127.0.0.1:8080", "http://127.0.0.1.nip.io/keys", false},
		{"https://gitlab.example.com", "file:///etc/passwd", false},
		{"https://gitlab.example.com", "https://user@gitlab.example.com/keys", false},
	} {
		err := allowedKeysURL(c.iss, c.keys)
		if (err == nil) != c.ok {
			t.Errorf("issuer %s, jwks_uri %s: %v; want allowed %v", c.iss, c.keys, err, c.ok)
		}
	}
}

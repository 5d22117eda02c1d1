package strictjson

import (
	"errors"
	"testing"
)

type entry struct {
	Role     string   `json:"role"`
	Projects []string `json:"projects"`
}

type file struct {
	Tokens []entry           `json:"tokens"`
	Named  map[string]entry  `json:"named"`
	Free   map[string]string `json:"free,omitempty"`
}

func TestCheckKeys(t *testing.T) {
	ok := []string{
		`{}`,
		`{"tokens": [{"role": "read", "projects": ["a/*"]}], "named": {"x": {"role": "admin"}, "X": {"role": "read"}}}`,
		`{"free": {"Role": "any case is a map key here"}}`,
	}
	for _, raw := range ok {
		if err := CheckKeys([]byte(raw), &file{}); err != nil {
			t.Errorf("CheckKeys(%s) = %v, want nil", raw, err)
		}
	}
	bad := map[string]string{
		`{"tokens": [{"role": "read", "Role": "admin"}]}`:                   `tokens[0]: key "Role" is not a field here (names are case-sensitive)`,
		`{"tokens": [{"role": "read"}, {"role": "read", "role": "admin"}]}`: `tokens[1]: key "role" appears twice`,
		`{"TOKENS": []}`: `key "TOKENS" is not a field here (names are case-sensitive)`,
		`{"named": {"x": {"role": "read"}, "x": {"role": "admin"}}}`: `named: key "x" appears twice`,
		`{"named": {"x": {"projects": [], "PROJECTS": ["*"]}}}`:      `named.x: key "PROJECTS" is not a field here (names are case-sensitive)`,
	}
	for raw, want := range bad {
		err := CheckKeys([]byte(raw), &file{})
		var ke *KeyError
		if !errors.As(err, &ke) || err.Error() != want {
			t.Errorf("CheckKeys(%s) = %v, want %s", raw, err, want)
		}
	}
	if err := CheckKeys([]byte(`{"tokens": [`), &file{}); err == nil {
		t.Error("CheckKeys of cut JSON = nil, want an error")
	}
}

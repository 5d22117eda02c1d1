package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"testing"

	"github.com/refkeeper/refkeeper/refs"
)

// FuzzDecodePinBody: any body either decodes into a valid request or is a
// 400 (never a panic, never another status), and whatever is accepted holds
// a well-formed SHA and merge request iid.
func FuzzDecodePinBody(f *testing.F) {
	for _, s := range []string{
		`{"sha":"0123456789012345678901234567890123456789"}`, `{"merge_request_iid":12}`,
		`{"sha":null,"merge_request_iid":1}`, `{"sha":1}`, `{"merge_request_iid":"12"}`, `{"merge_request_iid":1e3}`,
		`{"x":1}`, `{} {}`, `[]`, `null`, ``, `{"sha":"HEAD"}`, `{"merge_request_iid":9223372036854775808}`,
		`{"SHA":"0123456789012345678901234567890123456789"}`, `{"Merge_Request_IID":12}`, `{"\u017fha":"0123456789012345678901234567890123456789"}`,
		`{"s\u0068a":"0123456789012345678901234567890123456789"}`,
		`{"merge":{"target":"main"},"merge_request_iid":12}`, `{"merge":{"source":"","target":"main","mode":"squash"}}`,
		`{"merge":{"Target":"main","x":1}}`, `{"merge":null}`, `{"merge":[]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var in pinBody
		err := decodeStrict([]byte(body), &in, false)
		if err != nil {
			requireBadRequest(t, err)
			return
		}
		requireExactFields(t, body, "sha", "merge_request_iid", "merge")
		iid, err := parseIID(in.MergeRequestIID)
		if err != nil {
			requireBadRequest(t, err)
			return
		}
		if iid < 0 {
			t.Fatalf("negative iid %d from %q", iid, body)
		}
		merge, err := parseMerge(in.Merge, iid)
		if err != nil {
			requireBadRequest(t, err)
			return
		}
		if merge != nil && (merge.Target == "" || merge.Source == "" && iid == 0 || merge.Mode != "merge" && merge.Mode != "squash") {
			t.Fatalf("accepted merge %+v from %q", merge, body)
		}
		if in.SHA != nil {
			if _, err := refs.ParseObjectID(*in.SHA); err == nil && len(*in.SHA) != 40 {
				t.Fatalf("accepted sha %q", *in.SHA)
			}
		}
	})
}

// FuzzDecodeFinishBody: the optional finish body is a JSON object with a
// string status, or a 400.
func FuzzDecodeFinishBody(f *testing.F) {
	for _, s := range []string{``, `{}`, `{"status":"success"}`, `{"status":1}`, `{"status":"x"} trailing`, `{"other":1}`, `{"Status":"x"}`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		var in finishBody
		if err := decodeStrict([]byte(body), &in, true); err != nil {
			requireBadRequest(t, err)
			return
		}
		requireExactFields(t, body, "status")
	})
}

// requireExactFields fails when an accepted body has a key that is not
// exactly one of names (encoding/json would have matched it without regard
// to case).
func requireExactFields(t *testing.T, body string, names ...string) {
	t.Helper()
	var fields map[string]json.RawMessage
	if json.Unmarshal([]byte(body), &fields) != nil {
		return
	}
	for k := range fields {
		if !slices.Contains(names, k) {
			t.Fatalf("accepted field %q in %q", k, body)
		}
	}
}

func requireBadRequest(t *testing.T, err error) {
	t.Helper()
	var he *httpError
	if !errors.As(err, &he) || he.Status != http.StatusBadRequest {
		t.Fatalf("error %v is not a 400", err)
	}
}

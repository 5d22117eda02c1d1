package api

import (
	"encoding/json"
	"errors"

	"github.com/refkeeper/refkeeper/refs"
)

// mergeBody is the "merge" object of PUT …/ref: a merge the service
// computes. Pointers tell a field left out from one given empty.
type mergeBody struct {
	Source *string `json:"source"`
	Target *string `json:"target"`
	Mode   *string `json:"mode"`
}

// parseMerge reads the "merge" object strictly (unknown and miscased
// fields are 400, as at the top level); nil when it was not given.
func parseMerge(raw json.RawMessage, iid refs.MergeRequestIID) (*refs.MergeInput, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var in mergeBody
	if err := decodeStrict(raw, &in, false); err != nil {
		var he *httpError
		if errors.As(err, &he) {
			he.Message = "merge: " + he.Message
		}
		return nil, err
	}
	out := &refs.MergeInput{Mode: "merge"}
	if in.Mode != nil {
		if *in.Mode != "merge" && *in.Mode != "squash" {
			return nil, badRequest("merge.mode must be merge or squash")
		}
		out.Mode = refs.MergeMode(*in.Mode)
	}
	if in.Target == nil || *in.Target == "" {
		return nil, badRequest("merge.target is required: a SHA, a full ref name or a branch name")
	}
	out.Target = *in.Target
	switch {
	case in.Source != nil && *in.Source == "":
		return nil, badRequest("merge.source must not be empty: leave it out to merge the merge request's head")
	case in.Source != nil:
		out.Source = *in.Source
	case iid == 0:
		return nil, badRequest("merge.source is required without merge_request_iid")
	}
	return out, nil
}

// mergeJSON is the pin object's "merge": what a computed merge was made of.
type mergeJSON struct {
	SourceSHA string `json:"source_sha"`
	TargetSHA string `json:"target_sha"`
	Mode      string `json:"mode"`
}

func mergeOf(p refs.Pin) *mergeJSON {
	if p.Merge == nil {
		return nil
	}
	return &mergeJSON{SourceSHA: string(p.Merge.SourceSHA), TargetSHA: string(p.Merge.TargetSHA), Mode: string(p.Merge.Mode)}
}

package refs

import (
	"strconv"
	"time"

	"github.com/refkeeper/refkeeper/gitops"
)

// Project is a validated project name; see gitops.ParseProjectName.
type Project = gitops.ProjectName

// ProjectPattern names a set of projects ("group/app", "group/*", "*"); see
// gitops.ParseProjectPattern.
type ProjectPattern = gitops.ProjectPattern

// ParseProjectPattern validates a project pattern as a configuration file
// names it.
func ParseProjectPattern(s string) (ProjectPattern, error) {
	pat, err := gitops.ParseProjectPattern(s)
	if err != nil {
		return "", &InvalidInputError{Field: "projects", Reason: err.Error()}
	}
	return pat, nil
}

// MatchAny says whether any of the patterns covers p; see gitops.MatchAny.
func MatchAny(patterns []ProjectPattern, p Project) bool { return gitops.MatchAny(patterns, p) }

// ObjectID is a validated 40-hex commit SHA.
type ObjectID = gitops.ObjectID

// ParseProject validates a project name as the API receives it.
func ParseProject(s string) (Project, error) {
	p, err := gitops.ParseProjectName(s)
	if err != nil {
		return "", &InvalidInputError{Field: "project", Reason: err.Error()}
	}
	return p, nil
}

// ParseObjectID validates a SHA as the API receives it: 40 hex digits.
func ParseObjectID(s string) (ObjectID, error) {
	id, err := gitops.ParseObjectID(s)
	if err != nil {
		return "", &InvalidInputError{Field: "sha", Reason: err.Error()}
	}
	return id, nil
}

// PipelineID identifies a pipeline: 1 to 2^63-1.
type PipelineID int64

// ParsePipelineID parses an id from a URL path: plain decimal, no sign, no
// leading zero.
func ParsePipelineID(s string) (PipelineID, error) {
	id, err := gitops.ParseDecimalID(s)
	if err != nil {
		return 0, &InvalidInputError{Field: "pipeline_id", Reason: strconv.Quote(s) + " " + err.Error()}
	}
	return PipelineID(id), nil
}

// Ref returns the pipeline's ref, refs/pipelines/<id>.
func (id PipelineID) Ref() gitops.RefName { return gitops.PipelineRef(int64(id)) }

func (id PipelineID) String() string { return strconv.FormatInt(int64(id), 10) }

// MergeRequestIID identifies a merge request within a project; 0 means none.
type MergeRequestIID int64

// ParseMergeRequestIID parses an iid from a URL path, like ParsePipelineID.
func ParseMergeRequestIID(s string) (MergeRequestIID, error) {
	iid, err := gitops.ParseDecimalID(s)
	if err != nil {
		return 0, &InvalidInputError{Field: "merge_request_iid", Reason: strconv.Quote(s) + " " + err.Error()}
	}
	return MergeRequestIID(iid), nil
}

// State is where a pin is in its life.
type State string

const (
	// StatePinned: the pipeline may still run jobs; the ref is kept.
	StatePinned State = "pinned"
	// StateFinished: released; the ref stays until ExpiresAt for retried jobs.
	StateFinished State = "finished"
	// StateDeleted: the ref is gone; the record stays readable for max-age.
	StateDeleted State = "deleted"
)

// ParseState validates a state from a query string.
func ParseState(s string) (State, error) {
	switch st := State(s); st {
	case StatePinned, StateFinished, StateDeleted:
		return st, nil
	}
	return "", &InvalidInputError{Field: "state", Reason: strconv.Quote(s) + " is not one of pinned, finished, deleted"}
}

// Pin is the record that holds one pipeline ref alive.
type Pin struct {
	Project         Project
	PipelineID      PipelineID
	SHA             ObjectID
	MergeRequestIID MergeRequestIID // 0: not given
	State           State
	CreatedAt       time.Time
	FinishedAt      time.Time // zero until finished
	// ExpiresAt is when a finished pin's ref goes (zero until finished):
	// FinishedAt plus the retention in force when it finished, or the
	// moment its merge request was closed. Max-age, in force, may come first.
	ExpiresAt time.Time
	// Adopted is true for a pin the GC sweep made for a pipeline ref it found
	// without a record (CreatedAt is when it was first seen); such a pin
	// lives until max-age.
	Adopted bool
	// Merge is what a computed merge was made of; nil for a pin by SHA.
	Merge *Merge

	// deletionClaimed is true while a deleter holds a claim on the pin.
	deletionClaimed bool
}

// Ref returns the pin's pipeline ref.
func (p Pin) Ref() gitops.RefName { return p.PipelineID.Ref() }

// Policy is how long refs are kept.
type Policy struct {
	// Retention is how long a finished pin keeps its ref for retried jobs.
	Retention time.Duration
	// MaxAge is the oldest any pin or unknown pipeline ref may get: the safety
	// net for a pipeline whose finish never arrived. Deleted records are kept
	// for MaxAge too. It applies as it is now, to records written under
	// another one too (see luaDueRule).
	MaxAge time.Duration
}

// Default policy values, as documented in the contract.
const (
	DefaultRetention = 168 * time.Hour
	DefaultMaxAge    = 720 * time.Hour
)

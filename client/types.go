package client

import "time"

// State is a pin's state.
type State string

// The states of a pin.
const (
	StatePinned   State = "pinned"
	StateFinished State = "finished"
	StateDeleted  State = "deleted"
)

// Pin is the contract's pin object.
type Pin struct {
	Project    string `json:"project"`
	PipelineID int64  `json:"pipeline_id"`
	// Ref is refs/pipelines/<pipeline_id>.
	Ref string `json:"ref"`
	SHA string `json:"sha"`
	// Refspec is what a runner fetches: +<ref>:<ref>.
	Refspec string `json:"refspec"`
	// FetchURL is the project's smart-HTTP URL for runners.
	FetchURL string `json:"fetch_url"`
	// FetchToken opens exactly this pin's ref; nil once deleted. It is a
	// secret: pass it to the job, do not log it.
	FetchToken      *string    `json:"fetch_token"`
	MergeRequestIID *int64     `json:"merge_request_iid"`
	State           State      `json:"state"`
	CreatedAt       time.Time  `json:"created_at"`
	FinishedAt      *time.Time `json:"finished_at"`
	ExpiresAt       *time.Time `json:"expires_at"`
	// Merge is set when the service computed the pinned merge itself.
	Merge *Merge `json:"merge"`
}

// Merge says what a computed merge was made from.
type Merge struct {
	SourceSHA string `json:"source_sha"`
	TargetSHA string `json:"target_sha"`
	Mode      string `json:"mode"`
}

// PinRequest is the body of a pin. Give SHA, or MergeRequestIID alone (the
// SHA its merge ref points at now), or Merge (a merge the service computes).
type PinRequest struct {
	SHA             string        `json:"sha,omitempty"`
	MergeRequestIID *int64        `json:"merge_request_iid,omitempty"`
	Merge           *MergeRequest `json:"merge,omitempty"`
}

// Merge modes of a computed merge.
const (
	ModeMerge  = "merge"
	ModeSquash = "squash"
)

// MergeRequest names the inputs of a computed merge: a 40-hex SHA, a full
// ref name or a branch name each. Source may be empty when the pin gives a
// merge request IID and the host kind has a head ref; Mode empty is
// ModeMerge.
type MergeRequest struct {
	Source string `json:"source,omitempty"`
	Target string `json:"target"`
	Mode   string `json:"mode,omitempty"`
}

// ListOptions select a page of pins. Zero values: every state, the first
// page, the server's default limit (100).
type ListOptions struct {
	State  State
	Cursor string
	// Limit is 1 to 1000.
	Limit int
}

// PinPage is one page of a pin listing, newest first.
type PinPage struct {
	Pins []Pin `json:"pins"`
	// NextCursor continues the listing; nil on the last page.
	NextCursor *string `json:"next_cursor"`
}

// GCResult is what one sweep did.
type GCResult struct {
	Deleted int `json:"deleted"`
	// Adopted counts pipeline refs found without a pin, now tracked.
	Adopted int `json:"adopted"`
	// Kept counts live pins left.
	Kept int `json:"kept"`
	// Restored counts refs of live pins that had vanished and were
	// re-created; Purged deleted records dropped; FailedProjects projects the
	// sweep had to skip (retried by the next sweep).
	Restored       int   `json:"restored"`
	Purged         int   `json:"purged"`
	FailedProjects int   `json:"failed_projects"`
	DurationMS     int64 `json:"duration_ms"`
}

// Host kinds of a mirror.
const (
	HostGitLab  = "gitlab"
	HostGitHub  = "github"
	HostGitea   = "gitea"
	HostGeneric = "generic"
)

// Project kinds and states.
const (
	KindLocal  = "local"
	KindMirror = "mirror"

	ProjectCloning = "cloning"
	ProjectReady   = "ready"
	ProjectFailed  = "failed"
)

// Project is the contract's project object. The upstream fields are nil for
// a local project.
type Project struct {
	Project    string     `json:"project"`
	Kind       string     `json:"kind"`
	State      string     `json:"state"`
	Upstream   *string    `json:"upstream"`
	Host       *string    `json:"host"`
	Credential *string    `json:"credential"`
	FetchedAt  *time.Time `json:"fetched_at"`
	LastError  *string    `json:"last_error"`
}

// MirrorRequest registers a mirror. Host empty is HostGeneric; Credential
// names an entry of the server's credentials file and may be empty. The
// upstream URL must not carry a user or password.
type MirrorRequest struct {
	Upstream   string `json:"upstream"`
	Host       string `json:"host,omitempty"`
	Credential string `json:"credential,omitempty"`
}

// ProjectListOptions select a page of projects.
type ProjectListOptions struct {
	Cursor string
	Limit  int
}

// ProjectPage is one page of the project listing.
type ProjectPage struct {
	Projects   []Project `json:"projects"`
	NextCursor *string   `json:"next_cursor"`
}

// errorBody is the contract's error answer.
type errorBody struct {
	Error *struct {
		Code      string   `json:"code"`
		Message   string   `json:"message"`
		Conflicts []string `json:"conflicts"`
	} `json:"error"`
}

type finishBody struct {
	Status string `json:"status,omitempty"`
}

type pinsBody struct {
	Pins []Pin `json:"pins"`
}

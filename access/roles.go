package access

import "github.com/refkeeper/refkeeper/refs"

// Role is what a token may do, within its projects.
type Role string

// The roles of the contract's "Who may do what".
const (
	// Admin may do everything, on every project.
	Admin Role = "admin"
	// Pipeline may pin, get, list, finish and delete pins, close merge
	// requests and fetch, in its projects.
	Pipeline Role = "pipeline"
	// Read may get and list pins and projects and fetch, in its projects.
	Read Role = "read"
	// Job is a CI job known by its ID token (an identities entry), not a
	// role the file gives a token: it may pin, get and finish its own
	// pipeline's pin and fetch it, nothing else.
	Job Role = "job"
)

// Action is one kind of request, as the roles table sorts them.
type Action int

// The actions.
const (
	// ReadPins: get and list pins; get a project, see it in the listing.
	ReadPins Action = iota
	// WritePins: pin, finish, delete pins, close merge requests.
	WritePins
	// Fetch: fetch over /git/ with an API token.
	Fetch
	// Administer: register and delete mirrors, run GC. Admin only, and
	// not tied to one project.
	Administer
)

// Grant is what one authenticated caller may do.
type Grant struct {
	// Name is the token's name in the access file, "admin" for the
	// --tokens ones: for logs, never a secret.
	Name string
	Role Role
	// Projects the role applies to; ignored for Admin. For a Job, the
	// projects of the identities entries that accepted its token.
	Projects []refs.ProjectPattern
	// Project and Pipeline are a Job's own, read from its ID token's
	// claims: the one pin it may touch. Zero for the other roles.
	Project  refs.Project
	Pipeline refs.PipelineID
}

// AdminGrant is the grant of the --tokens tokens.
var AdminGrant = Grant{Name: "admin", Role: Admin}

// May says whether the grant covers action a on project p (p is ignored
// for Administer, which only Admin may do). A Job may do nothing that is
// not about its own pin (MayPin, MayFetchPin).
func (g Grant) May(a Action, p refs.Project) bool {
	if g.Role == Admin {
		return true
	}
	var roleOK bool
	switch a {
	case ReadPins, Fetch:
		roleOK = g.Role == Read || g.Role == Pipeline
	case WritePins:
		roleOK = g.Role == Pipeline
	}
	return roleOK && refs.MatchAny(g.Projects, p)
}

// MayPin says whether the grant covers action a (ReadPins: get; WritePins:
// pin or finish) on pipeline id of project p: as May for a token's role,
// and for a Job only its own pipeline of its own project, when an entry
// that accepted its token covers that project.
func (g Grant) MayPin(a Action, p refs.Project, id refs.PipelineID) bool {
	if g.Role != Job {
		return g.May(a, p)
	}
	return (a == ReadPins || a == WritePins) && g.ownPin(p, id)
}

// MayFetchPin says whether a Job may fetch its pin: its project is one an
// accepting entry covers. The pin itself (which ref, while it lives) is
// the git mount's to hold it to.
func (g Grant) MayFetchPin() bool {
	return g.Role == Job && g.ownPin(g.Project, g.Pipeline)
}

func (g Grant) ownPin(p refs.Project, id refs.PipelineID) bool {
	return g.Project != "" && g.Pipeline > 0 && p == g.Project && id == g.Pipeline &&
		refs.MatchAny(g.Projects, p)
}

// MayList says whether the grant may list projects (each one it may read
// is shown); a Job may not.
func (g Grant) MayList() bool { return g.Role == Admin || g.Role == Pipeline || g.Role == Read }

// MayAdminister says whether the grant may register and delete mirrors
// and run GC.
func (g Grant) MayAdminister() bool { return g.Role == Admin }

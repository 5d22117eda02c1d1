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
	// Projects the role applies to; ignored for Admin.
	Projects []refs.ProjectPattern
}

// AdminGrant is the grant of the --tokens tokens.
var AdminGrant = Grant{Name: "admin", Role: Admin}

// May says whether the grant covers action a on project p (p is ignored
// for Administer, which only Admin may do).
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

// MayAdminister says whether the grant may register and delete mirrors
// and run GC.
func (g Grant) MayAdminister() bool { return g.Role == Admin }

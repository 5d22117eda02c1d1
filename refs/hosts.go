package refs

import (
	"strconv"

	"github.com/refkeeper/refkeeper/gitops"
)

// Which refs a merge request has on each host kind is decided here alone:
// the pin lifecycle (a pin by merge request, a computed merge's default
// source) and the mirrors (what a first clone and a pin's fetch take) ask
// HostKind.

// HostKind names where a mirror's host keeps a merge request's refs.
type HostKind string

// The host kinds of the contract. A local project is HostGitLab.
const (
	HostGitLab  HostKind = "gitlab"  // refs/merge-requests/<iid>/head and /merge
	HostGitHub  HostKind = "github"  // refs/pull/<iid>/head and /merge
	HostGitea   HostKind = "gitea"   // refs/pull/<iid>/head, no merge ref (also Forgejo)
	HostGeneric HostKind = "generic" // none
)

// ParseHostKind validates a host kind; empty is HostGeneric.
func ParseHostKind(s string) (HostKind, error) {
	switch h := HostKind(s); h {
	case "":
		return HostGeneric, nil
	case HostGitLab, HostGitHub, HostGitea, HostGeneric:
		return h, nil
	}
	return "", &InvalidInputError{Field: "host", Reason: strconv.Quote(s) + " is not one of gitlab, github, gitea, generic"}
}

// Namespace is where the host keeps merge request refs, or "".
func (h HostKind) Namespace() string {
	switch h {
	case HostGitLab:
		return "refs/merge-requests/"
	case HostGitHub, HostGitea:
		return "refs/pull/"
	}
	return ""
}

// MergeRef is the host's merge ref of a merge request; ok is false for a
// host kind that has none (gitea, generic).
func (h HostKind) MergeRef(iid MergeRequestIID) (gitops.RefName, bool) {
	switch h {
	case HostGitLab:
		return gitops.MergeRequestRef(int64(iid)), true
	case HostGitHub:
		return gitops.RefName(h.Namespace() + strconv.FormatInt(int64(iid), 10) + "/merge"), true
	}
	return "", false
}

// PinMergeRef is the merge ref a pin by merge request alone takes its SHA
// from; a host kind without merge refs is *MergeRefNotFoundError.
func (h HostKind) PinMergeRef(iid MergeRequestIID) (gitops.RefName, error) {
	if ref, ok := h.MergeRef(iid); ok {
		return ref, nil
	}
	return "", &MergeRefNotFoundError{Ref: gitops.RefName("refs/pull/" + strconv.FormatInt(int64(iid), 10) +
		"/merge (a " + string(h) + " host has no merge refs)")}
}

// HeadRef is the host's head ref of a merge request; ok is false for
// generic.
func (h HostKind) HeadRef(iid MergeRequestIID) (gitops.RefName, bool) {
	ns := h.Namespace()
	if ns == "" {
		return "", false
	}
	return gitops.RefName(ns + strconv.FormatInt(int64(iid), 10) + "/head"), true
}

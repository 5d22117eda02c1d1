package gitops

import (
	"encoding/hex"
	"strconv"
	"strings"
)

// ProjectName names a bare repository below the repos root: "group/app" is
// "<root>/group/app.git". Only ParseProjectName makes one, so a ProjectName is
// always safe to join to the root.
type ProjectName string

// MaxProjectNameLen is the longest project name accepted, in bytes.
const MaxProjectNameLen = 255

// repoSuffix ends the directory name of every repository below the root.
const repoSuffix = ".git"

// maxFileNameLen is the file systems' NAME_MAX: the longest name of one
// directory entry. The last segment of a name becomes "<segment>.git", so
// it may be at most maxFileNameLen-len(repoSuffix) bytes; longer, the
// mkdir or rename fails with ENAMETOOLONG, which is bad input, not an
// outage.
const maxFileNameLen = 255

// ParseProjectName validates s: 1 to 255 bytes of segments [A-Za-z0-9._-]+
// joined by "/", where no segment is "." or "..", starts with "." or ends in
// ".git", and the last one is at most 251 bytes (it is stored as
// "<segment>.git", which must fit in one directory entry).
//
// A segment ending in ".git" is refused because the repository of
// "demo/app" is the directory demo/app.git: a project "demo/app.git/x"
// would lie inside it, and whatever git does in the outer repository
// (pack-refs, gc) would reach into the inner one.
func ParseProjectName(s string) (ProjectName, error) {
	if len(s) == 0 || len(s) > MaxProjectNameLen {
		return "", &InvalidNameError{Kind: "project name", Value: s, Reason: "must be 1 to 255 characters"}
	}
	segs := strings.Split(s, "/")
	if last := segs[len(segs)-1]; len(last)+len(repoSuffix) > maxFileNameLen {
		return "", &InvalidNameError{Kind: "project name", Value: s,
			Reason: "has a last path segment longer than " + strconv.Itoa(maxFileNameLen-len(repoSuffix)) + " characters"}
	}
	for _, seg := range segs {
		if seg == "" {
			return "", &InvalidNameError{Kind: "project name", Value: s, Reason: "has an empty path segment"}
		}
		if seg[0] == '.' {
			return "", &InvalidNameError{Kind: "project name", Value: s, Reason: "has a path segment starting with '.'"}
		}
		if strings.HasSuffix(seg, repoSuffix) {
			return "", &InvalidNameError{Kind: "project name", Value: s, Reason: "has a path segment ending in \".git\""}
		}
		for i := 0; i < len(seg); i++ {
			if !isNameByte(seg[i]) {
				return "", &InvalidNameError{Kind: "project name", Value: s, Reason: "may only contain A-Z a-z 0-9 . _ - and /"}
			}
		}
	}
	return ProjectName(s), nil
}

func isNameByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-'
}

// String returns the name as given.
func (p ProjectName) String() string { return string(p) }

// ObjectID is a SHA-1 object name as 40 lower-case hex digits.
type ObjectID string

// ZeroID is git's "no object", used as the expected old value of a create.
const ZeroID ObjectID = "0000000000000000000000000000000000000000"

// ParseObjectID accepts exactly 40 hex digits (either case) and returns them
// in lower case. Symbolic names such as HEAD or refs/heads/main are refused:
// a pin names a commit, not something that moves.
func ParseObjectID(s string) (ObjectID, error) {
	if len(s) != 40 {
		return "", &InvalidNameError{Kind: "sha", Value: s, Reason: "must be 40 hex digits"}
	}
	if _, err := hex.DecodeString(s); err != nil {
		return "", &InvalidNameError{Kind: "sha", Value: s, Reason: "must be 40 hex digits"}
	}
	id := ObjectID(strings.ToLower(s))
	if id == ZeroID {
		return "", &InvalidNameError{Kind: "sha", Value: s, Reason: "is the zero object id"}
	}
	return id, nil
}

// String returns the hex digits.
func (id ObjectID) String() string { return string(id) }

// Short returns the first 10 hex digits, for messages.
func (id ObjectID) Short() string {
	if len(id) > 10 {
		return string(id[:10])
	}
	return string(id)
}

// RefName is a full ref name such as refs/pipelines/7.
type RefName string

// String returns the ref name.
func (r RefName) String() string { return string(r) }

// PipelineRefPrefix is the only namespace gitops ever writes.
const PipelineRefPrefix = "refs/pipelines/"

// PipelineRef formats the ref of a pipeline: the one place that spells
// refs/pipelines/<id>.
func PipelineRef(id int64) RefName {
	return RefName(PipelineRefPrefix + strconv.FormatInt(id, 10))
}

// MergeRequestRef formats the moving merge ref of a merge request.
func MergeRequestRef(iid int64) RefName {
	return RefName("refs/merge-requests/" + strconv.FormatInt(iid, 10) + "/merge")
}

// ParsePipelineRef returns the pipeline id of refs/pipelines/<id>, and false
// for anything else (including ids with a sign or leading zero, which the
// service never writes).
func ParsePipelineRef(r RefName) (int64, bool) {
	s, ok := strings.CutPrefix(string(r), PipelineRefPrefix)
	if !ok {
		return 0, false
	}
	id, err := ParseDecimalID(s)
	return id, err == nil
}

// ParseDecimalID parses a positive int64 written in plain decimal: no sign,
// no leading zero, no spaces, 1 to 9223372036854775807.
func ParseDecimalID(s string) (int64, error) {
	if s == "" || len(s) > 19 || s[0] == '0' {
		return 0, errBadID
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, errBadID
		}
	}
	id, err := strconv.ParseInt(s, 10, 64)
	if err != nil || id < 1 {
		return 0, errBadID
	}
	return id, nil
}

// ProjectPattern names a set of projects: one project's name, "prefix/*"
// (every project whose name starts with "prefix/", at any depth) or "*"
// (every project). Only ParseProjectPattern makes one.
type ProjectPattern string

// AllProjects is the pattern that matches every project.
const AllProjects ProjectPattern = "*"

// ParseProjectPattern validates s: "*", a project name, or a project name
// followed by "/*".
func ParseProjectPattern(s string) (ProjectPattern, error) {
	if s == string(AllProjects) {
		return AllProjects, nil
	}
	name, _ := strings.CutSuffix(s, "/*")
	if _, err := ParseProjectName(name); err != nil {
		return "", &InvalidNameError{Kind: "project pattern", Value: s, Reason: `must be "*", a project name or a project name followed by "/*"`}
	}
	return ProjectPattern(s), nil
}

// Match says whether the pattern covers project p.
func (pat ProjectPattern) Match(p ProjectName) bool {
	if pat == AllProjects {
		return true
	}
	if prefix, ok := strings.CutSuffix(string(pat), "*"); ok {
		return strings.HasPrefix(string(p), prefix)
	}
	return string(pat) == string(p)
}

// MatchAny says whether any of the patterns covers p.
func MatchAny(patterns []ProjectPattern, p ProjectName) bool {
	for _, pat := range patterns {
		if pat.Match(p) {
			return true
		}
	}
	return false
}

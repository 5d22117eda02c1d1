package githttp

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/refkeeper/refkeeper/pktline"
)

// protocolV2 is the only version that changes what upload-pack reads; v1
// requests are v0 requests behind a "version 1" line.
const protocolV2 = 2

// protocolVersion is the git protocol version a client asks for, read the
// way git reads GIT_PROTOCOL (colon-separated key=value items, the highest
// "version=" wins), from the canonical Git-Protocol header only. Other
// spellings (Git_Protocol, GIT_PROTOCOL) are other headers to net/http and
// are never passed on, so git cannot see a version the server did not.
func protocolVersion(h http.Header) int {
	version := 0
	for _, v := range h.Values("Git-Protocol") {
		for item := range strings.SplitSeq(v, ":") {
			n, ok := strings.CutPrefix(strings.TrimSpace(item), "version=")
			if !ok {
				continue
			}
			if n, err := strconv.Atoi(n); err == nil && n > version && n <= protocolV2 {
				version = n
			}
		}
	}
	return version
}

// decodeRequest splits an upload-pack request body into pkt-lines:
// anything but a well-formed sequence of data, flush and delim packets (a
// response-end packet, a bad length, a short packet, a NUL in data) is
// errMalformedPkt. Each data line is rebuilt from its text with one
// newline, as git's client sends it, so git reads exactly the text that
// was checked.
func decodeRequest(body []byte) ([]pktline.Packet, error) {
	lines, err := pktline.Decode(body)
	if err != nil {
		return nil, errMalformedPkt
	}
	for i, l := range lines {
		if l.Kind == pktline.ResponseEnd || bytes.IndexByte(l.Data, 0) >= 0 {
			return nil, errMalformedPkt
		}
		if l.Kind == pktline.Data {
			lines[i] = pktline.Line(l.Text())
		}
	}
	return lines, nil
}

// fetchScope is what a fetch token may fetch: one ref, at the SHA its pin
// holds.
type fetchScope struct {
	ref string // refs/pipelines/<id>
	sha string // the pin's SHA, 40 lower-case hex
	// reach answers commits the pinned one reaches (as far as it looks),
	// asked at most once per request and only when a have or shallow line
	// names another object; nil: none but the pinned commit.
	reach func() (map[string]bool, error)
}

// filter checks a scoped upload-pack request and answers the request git
// is given instead: built from the lines that passed, so git sees exactly
// what was checked. The rule, for both protocol versions:
//
//   - a want must be the pinned SHA and a want-ref the pinned ref; anything
//     else (another object, another ref) is refused (git itself then
//     refuses want-ref too, as ref-in-want is not advertised, see
//     scopedConfig);
//   - deepen-not and filter are refused: the first names a ref to measure
//     against, the second is not served;
//   - include-tag is dropped: pack-objects would add every annotated tag
//     of a sent commit, hidden or not;
//   - have and shallow lines are kept only when they name a commit the
//     pinned one reaches (within haveWalk commits): upload-pack
//     acknowledges the haves it has, which would tell whether any other
//     object exists. A client's other haves are dropped (its pack is
//     bigger, never wrong); if a shallow line is dropped, every have is,
//     so that the pack is whole;
//   - v2: ls-refs is asked for the pinned ref alone (hideRefs hides the
//     rest too, this also bounds its cost), fetch as above, every other
//     command (object-info, bundle-uri, ...) is refused; one command per
//     request, nothing after it; unknown capabilities and ls-refs
//     arguments are dropped, unknown fetch arguments refused.
//
// wantedRef says that a v2 want-ref of the pinned ref was given to git as
// a want of its SHA: the answer must get the wanted-refs section the
// client asked for (addWantedRef).
func (s fetchScope) filter(version int, body []byte) (out []byte, wantedRef bool, err error) {
	lines, err := decodeRequest(body)
	if err != nil {
		return nil, false, err
	}
	if version == protocolV2 {
		lines, wantedRef, err = s.filterV2(lines)
	} else {
		lines, err = s.filterV0(lines)
	}
	if err != nil {
		return nil, false, err
	}
	out, err = pktline.Encode(lines)
	if err != nil { // a line grew past a packet: refused, never cut
		return nil, false, errMalformedPkt
	}
	return out, wantedRef, nil
}

func (s fetchScope) refuse(format string, args ...any) error {
	return &Error{Status: http.StatusForbidden,
		Message: "a fetch token fetches only " + s.ref + " at " + s.sha + ": " + fmt.Sprintf(format, args...)}
}

// filterV2 holds a protocol v2 request (capabilities, delim, arguments,
// flush) to the scope.
func (s fetchScope) filterV2(lines []pktline.Packet) (_ []pktline.Packet, wantedRef bool, _ error) {
	var out []pktline.Packet
	command := ""
	i := 0
	for ; i < len(lines) && lines[i].Kind == pktline.Data; i++ {
		key, value, _ := strings.Cut(lines[i].Text(), "=")
		switch key {
		case "command":
			if command != "" {
				return nil, false, s.refuse("one command per request")
			}
			command = value
			out = append(out, lines[i])
		case "agent", "object-format":
			out = append(out, lines[i])
		}
	}
	if i == len(lines) {
		if command == "" && len(lines) == 0 {
			return nil, false, nil // an empty request: upload-pack ends at once
		}
		return nil, false, errMalformedPkt
	}
	switch command {
	case "ls-refs", "fetch":
	case "":
		return nil, false, errMalformedPkt
	default:
		return nil, false, s.refuse("command %q is not served", command)
	}
	var args []pktline.Packet
	if lines[i].Kind == pktline.Delim {
		for i++; i < len(lines) && lines[i].Kind == pktline.Data; i++ {
			args = append(args, lines[i])
		}
	}
	if i != len(lines)-1 || lines[i].Kind != pktline.Flush {
		return nil, false, s.refuse("one request per body, ending in a flush")
	}
	if command == "ls-refs" {
		args = s.lsRefsArgs(args)
	} else {
		var err error
		if args, wantedRef, err = s.fetchArgs(args, true); err != nil {
			return nil, false, err
		}
	}
	out = append(out, pktline.Packet{Kind: pktline.Delim})
	out = append(out, args...)
	return append(out, pktline.Packet{Kind: pktline.Flush}), wantedRef, nil
}

// lsRefsArgs keeps peel and symrefs and asks for the pinned ref only.
func (s fetchScope) lsRefsArgs(args []pktline.Packet) []pktline.Packet {
	var out []pktline.Packet
	for _, a := range args {
		if a.Text() == "peel" || a.Text() == "symrefs" {
			out = append(out, a)
		}
	}
	return append(out, pktline.Line("ref-prefix "+s.ref))
}

// noObject stands in for haves that were all dropped from a v2 round that
// is not done: with no have at all upload-pack would skip the
// acknowledgments the client waits for and send a pack at once; a have it
// does not find is answered NAK, as git answers any have it lacks.
const noObject = "0000000000000000000000000000000000000000"

// fetchArgs checks the arguments of a v2 fetch (v2) or the lines of a v0
// request (v0).
func (s fetchScope) fetchArgs(args []pktline.Packet, v2 bool) (_ []pktline.Packet, wantedRef bool, _ error) {
	var out []pktline.Packet
	var reached map[string]bool
	reaches := func(oid string) (bool, error) {
		if oid == s.sha {
			return true, nil
		}
		if reached == nil && s.reach != nil {
			var err error
			if reached, err = s.reach(); err != nil {
				return false, err
			}
		}
		return reached[oid], nil
	}
	sawHave, keptHave, droppedShallow, done := false, false, false, false
	for _, a := range args {
		if a.Kind != pktline.Data {
			out = append(out, a)
			continue
		}
		key, value, _ := strings.Cut(a.Text(), " ")
		switch key {
		case "want":
			if !v2 { // v0 want lines carry capabilities
				value, _, _ = strings.Cut(value, " ")
			}
			if value != s.sha {
				return nil, false, s.refuse("want %s refused", value)
			}
		case "want-ref":
			if !v2 || value != s.ref {
				return nil, false, s.refuse("want-ref %s refused", value)
			}
			wantedRef = true
			a = pktline.Line("want " + s.sha)
		case "have", "shallow":
			ok, err := reaches(value)
			if err != nil {
				return nil, false, err
			}
			sawHave = sawHave || key == "have"
			keptHave = keptHave || ok && key == "have"
			droppedShallow = droppedShallow || !ok && key == "shallow"
			if !ok {
				continue
			}
		case "include-tag":
			continue
		case "deepen", "deepen-since":
			if _, err := strconv.ParseUint(value, 10, 64); err != nil {
				return nil, false, s.refuse("%s %q is not a number", key, value)
			}
		case "done":
			done = true
		case "deepen-relative":
		case "thin-pack", "no-progress", "ofs-delta", "sideband-all", "wait-for-done":
			if !v2 {
				return nil, false, s.refuse("%q is not a v0 request line", key)
			}
		default: // deepen-not, filter, packfile-uris, and what git may add later
			if key == "" {
				return nil, false, errMalformedPkt
			}
			return nil, false, s.refuse("%q is not served", key)
		}
		out = append(out, a)
	}
	if droppedShallow {
		// upload-pack would take the client for having the history behind
		// a shallow commit it was not told of, and leave objects out of
		// the pack: without haves the pack is whole.
		out = slices.DeleteFunc(out, func(l pktline.Packet) bool { return strings.HasPrefix(l.Text(), "have ") })
		keptHave = false
	}
	if v2 && sawHave && !keptHave && !done {
		out = append(out, pktline.Line("have "+noObject))
	}
	return out, wantedRef, nil
}

// v0Capabilities are the capabilities a v0 fetch may ask for with a fetch
// token: include-tag is not among them (see filter), nor filter.
var v0Capabilities = map[string]bool{
	"multi_ack": true, "multi_ack_detailed": true, "no-done": true, "thin-pack": true,
	"side-band": true, "side-band-64k": true, "ofs-delta": true, "shallow": true,
	"deepen-since": true, "deepen-not": true, "deepen-relative": true, "no-progress": true,
}

// filterV0 holds a v0 (or v1) stateless request to the scope: want lines
// (the first with capabilities), shallow and deepen lines, a flush, then
// haves and done or a flush.
func (s fetchScope) filterV0(lines []pktline.Packet) ([]pktline.Packet, error) {
	if len(lines) > 0 && lines[0].Kind == pktline.Data && !strings.HasPrefix(lines[0].Text(), "want ") {
		return nil, s.refuse("a fetch request starts with want")
	}
	// upload-pack reads capabilities from every want line, not only the
	// first: each is rebuilt from the ones allowed.
	lines = slices.Clone(lines)
	for i, l := range lines {
		rest, ok := strings.CutPrefix(l.Text(), "want ")
		if l.Kind != pktline.Data || !ok {
			continue
		}
		fields := strings.Fields(rest)
		kept := []string{"want"}
		for j, c := range fields {
			name, _, _ := strings.Cut(c, "=")
			if j == 0 || v0Capabilities[c] || name == "agent" || name == "object-format" {
				kept = append(kept, c)
			}
		}
		lines[i] = pktline.Line(strings.Join(kept, " "))
	}
	// Wants, shallows and deepens come before the first flush; haves and
	// done after it; nothing after done or a second flush.
	flushes, done := 0, false
	for _, l := range lines {
		if done || flushes == 2 {
			return nil, s.refuse("one request per body")
		}
		switch key, _, _ := strings.Cut(l.Text(), " "); {
		case l.Kind == pktline.Delim:
			return nil, errMalformedPkt
		case l.Kind == pktline.Flush:
			flushes++
		case (key == "have" || key == "done") != (flushes == 1):
			return nil, s.refuse("%q out of place", key)
		case key == "done":
			done = true
		}
	}
	out, _, err := s.fetchArgs(lines, false)
	return out, err
}

// addWantedRef writes the start of a v2 fetch's answer with the
// wanted-refs section of the pinned ref added where the protocol puts it:
// after acknowledgments and shallow-info, before the packfile section. An
// answer with no packfile (acknowledgments only) is left as it is.
func addWantedRef(s fetchScope) func(r *bufio.Reader, w io.Writer) error {
	return func(r *bufio.Reader, w io.Writer) error {
		for {
			p, err := pktline.Read(r)
			if err != nil {
				return fmt.Errorf("reading git's answer: %w", err)
			}
			head := []pktline.Packet{p}
			if p.Kind == pktline.Data && (p.Text() == "packfile" || p.Text() == "packfile-uris") {
				head = []pktline.Packet{pktline.Line("wanted-refs"), pktline.Line(s.sha + " " + s.ref), {Kind: pktline.Delim}, p}
			}
			b, err := pktline.Encode(head)
			if err != nil {
				return err
			}
			if _, err := w.Write(b); err != nil {
				return err
			}
			if len(head) > 1 || p.Kind == pktline.Flush || p.Kind == pktline.ResponseEnd {
				return nil
			}
		}
	}
}

package gitops

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/gitexec"
	"github.com/refkeeper/refkeeper/pktline"
)

// ErrProbeUnsupported is an upstream that cannot be asked which objects
// it has in one round: a file:// upstream, or a server whose protocol v2
// fetch does not offer wait-for-done.
var ErrProbeUnsupported = errors.New("the upstream cannot be asked which objects it has")

// probeMaxAnswer bounds what a probe reads: the capability advertisement
// and one ACK line (49 bytes) per object asked for.
const probeMaxAnswer = 4 << 20

// probe asks the upstream which of ids it has, in one round trip and
// without fetching anything: a protocol v2 fetch request holding only
// "have" lines and wait-for-done, which upload-pack answers with an ACK for
// every object it has. It runs git's own remote helper (git remote-http or
// remote-https, in stateless-connect mode) with every option of a fetch:
// the pinned addresses, no redirects, the credential through its pipe.
// Its answer is the set of ids present; an upstream that cannot say is
// ErrProbeUnsupported, other failures are classified like a fetch's.
func (r *Root) probe(ctx context.Context, dir string, up Upstream, ids []string, turn turnWatch) (map[string]bool, error) {
	u, err := url.Parse(up.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, ErrProbeUnsupported
	}
	req := []pktline.Packet{pktline.Line("command=fetch"), {Kind: pktline.Delim}, pktline.Line("wait-for-done")}
	for _, id := range ids {
		if _, err := ParseObjectID(id); err != nil {
			return nil, err
		}
		req = append(req, pktline.Line("have "+id))
	}
	body, err := pktline.Encode(append(req, pktline.Packet{Kind: pktline.Flush}))
	if err != nil {
		return nil, err
	}
	ctx, release, err := r.upstreamTurn(ctx, turn)
	if err != nil {
		return nil, err
	}
	defer release()
	args, pipeR, err := upstreamArgs(up)
	if err != nil {
		return nil, err
	}
	if pipeR != nil {
		defer pipeR.Close()
	}
	cmd := r.command(ctx, dir, append(args, "remote-"+u.Scheme, up.URL, up.URL)...)
	if pipeR != nil {
		cmd.ExtraFiles = []*os.File{pipeR}
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, &StorageError{Op: "starting the upstream probe", Err: err}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, &StorageError{Op: "starting the upstream probe", Err: err}
	}
	var stderr gitexec.Stderr
	cmd.Stderr = &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return nil, &StorageError{Op: "starting the upstream probe", Err: err}
	}
	out := bufio.NewReader(io.LimitReader(stdout, probeMaxAnswer))
	// The helper reads its command line buffered: the request is written
	// only once it answered the command (an empty line), or it would sit
	// in that buffer, unseen by the proxy.
	_, _ = io.WriteString(stdin, "stateless-connect git-upload-pack\n")
	line, rerr := out.ReadString('\n')
	if rerr == nil && line == "\n" {
		_, _ = stdin.Write(body)
	}
	stdin.Close()
	answer, _ := io.ReadAll(out)
	werr := cmd.Wait()
	if rerr != nil || line != "\n" || werr != nil {
		if werr == nil {
			werr = fmt.Errorf("the remote helper answered %q to stateless-connect", line)
		}
		return nil, classifyFetch(ctx, up.URL, stderr.String(), werr, time.Since(start))
	}
	return parseProbe(answer)
}

// parseProbe reads the capability advertisement and the acknowledgments
// section of a probe's answer.
func parseProbe(answer []byte) (map[string]bool, error) {
	pkts, err := pktline.Decode(answer)
	if err != nil {
		return nil, fmt.Errorf("probe answer: %w", err)
	}
	i, waitForDone := 0, false
	for ; i < len(pkts) && pkts[i].Kind == pktline.Data; i++ {
		if name, value, _ := strings.Cut(pkts[i].Text(), "="); name == "fetch" {
			waitForDone = strings.Contains(" "+value+" ", " wait-for-done ")
		}
	}
	if !waitForDone {
		return nil, ErrProbeUnsupported
	}
	present := map[string]bool{}
	acks := false
	for i++; i < len(pkts); i++ {
		p := pkts[i]
		if p.Kind != pktline.Data {
			if acks {
				return present, nil
			}
			continue
		}
		switch text := p.Text(); {
		case text == "acknowledgments":
			acks = true
		case acks && strings.HasPrefix(text, "ACK "):
			present[strings.TrimPrefix(text, "ACK ")] = true
		case strings.HasPrefix(text, "ERR "):
			return nil, fmt.Errorf("probe: the upstream said %q", text)
		}
	}
	if !acks {
		return nil, errors.New("probe: no acknowledgments in the answer")
	}
	return present, nil
}

package githttp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"

	"github.com/refkeeper/refkeeper/packcache"
	"github.com/refkeeper/refkeeper/pktline"
	"github.com/refkeeper/refkeeper/refs"
)

// The response cache: a scoped request (a pin's fetch token, a job's ID
// token) is rebuilt by the scope filter, so the runners of one pin send
// byte-identical requests, and the whole answer of `git http-backend` is
// the same for all of them. It is kept in the pack cache (Share): a hit
// runs no git at all.

// responseKind is the first part of a response's key: the pack cache's
// other users key their entries otherwise.
const responseKind = "githttp response v1"

// shareKey is everything a scoped answer depends on: the project, the
// scope (its ref and SHA: the advertisement lists that ref at that SHA,
// and upload-pack serves what that SHA reaches), the protocol version,
// the endpoint, the content type and the request body as the filter
// rebuilt it, and whether a want-ref was rewritten (the answer then gets
// a wanted-refs section). No token or identity: two tokens of one pin
// send the same request and may receive the same answer.
func shareKey(p refs.Project, scope fetchScope, b backendRun, wantedRef bool) [][]byte {
	return [][]byte{
		[]byte(responseKind), []byte(p), []byte(scope.ref), []byte(scope.sha),
		[]byte(strconv.Itoa(b.version)), []byte(b.method), []byte(b.rest), []byte(b.contentType),
		[]byte(strconv.FormatBool(wantedRef)), b.body,
	}
}

// errNotKept is a generation's answer that is not kept: anything but a
// whole 200.
type errNotKept struct{ status int }

func (e *errNotKept) Error() string {
	return fmt.Sprintf("git http-backend answered %d", e.status)
}

// generate is the generation of a shared answer: one `git http-backend`
// run (without the pack-objects hook: the entry is the only copy
// needed), on the cache's context and within --git-timeout, in one
// --max-git-http turn. It writes what the client receives: the CGI
// header block (without Content-Length), then the body, rewritten as b
// says. Anything but a whole 200 is an error: the entry is dropped.
func (s *Server) generate(b backendRun) packcache.Generate {
	return func(ctx context.Context, w io.Writer) error {
		release, err := s.backends.AcquireWithin(ctx, s.queueWait)
		if err != nil {
			return &Error{Status: http.StatusServiceUnavailable, Message: "too many fetches at once; retry later: " + err.Error()}
		}
		defer release()
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		g, err := s.startBackend(ctx, cancel, b)
		if err != nil {
			return err
		}
		g.header.Del("Content-Length")
		if g.status != http.StatusOK {
			// git's refusal (415 for a content type it does not take,
			// say) reaches the readers as it is, and is not kept: the
			// entry ends with errNotKept after it and is dropped.
			if err := writeCGIHeader(w, g.status, g.header); err != nil {
				return s.failed(b, g, err)
			}
			if _, err := io.Copy(w, g.out); err != nil {
				return s.failed(b, g, err)
			}
			_ = g.finish(false)
			return &errNotKept{status: g.status}
		}
		var body io.Reader = g.out
		if b.rewrite != nil {
			whole, err := io.ReadAll(g.out)
			if err == nil {
				whole, err = b.rewrite(whole)
			}
			if err != nil {
				return s.failed(b, g, err)
			}
			body = bytes.NewReader(whole)
		}
		if err := writeCGIHeader(w, g.status, g.header); err != nil {
			return s.failed(b, g, err)
		}
		if b.head != nil {
			if err := b.head(g.out, w); err != nil {
				return s.failed(b, g, err)
			}
		}
		if _, err := io.Copy(w, body); err != nil {
			return s.failed(b, g, err)
		}
		if err := g.finish(false); err != nil {
			s.logger.Warn("serving git", "project", b.project, "err", err, "stderr", g.stderr.String())
			return &refs.UnavailableError{Op: "running git http-backend", Cause: err}
		}
		return nil
	}
}

// writeCGIHeader writes a CGI header block that readCGIHeader reads back:
// the status (when not 200, which is what a block without one means) and
// the header, then the blank line.
func writeCGIHeader(w io.Writer, status int, h http.Header) error {
	if status != http.StatusOK {
		if _, err := fmt.Fprintf(w, "Status: %d %s\r\n", status, http.StatusText(status)); err != nil {
			return err
		}
	}
	if err := h.Write(w); err != nil {
		return err
	}
	_, err := io.WriteString(w, "\r\n")
	return err
}

// failed ends a generation's git and answers why it failed.
func (s *Server) failed(b backendRun, g *started, err error) error {
	waitErr := g.finish(true)
	s.logger.Warn("serving git", "project", b.project, "err", err, "exit", waitErr, "stderr", g.stderr.String())
	var refused *Error
	if errors.As(err, &refused) {
		return err
	}
	return &refs.UnavailableError{Op: "running git http-backend", Cause: err}
}

// pinnedAdvertisement rewrites a scoped v0 advertisement (stripSymrefs)
// and checks that it lists the pinned ref at the pinned SHA: one that
// does not (the pin moved or went between the scope check and git) is
// not kept under this scope's key.
func pinnedAdvertisement(scope fetchScope) func([]byte) ([]byte, error) {
	return func(advert []byte) ([]byte, error) {
		out, err := stripSymrefs(advert)
		if err != nil {
			return nil, err
		}
		packets, err := pktline.Decode(out)
		if err != nil {
			return nil, errBadAdvertisement
		}
		want := scope.sha + " " + scope.ref
		for _, p := range packets {
			if line, _, _ := bytes.Cut(p.Data, []byte{0}); p.Kind == pktline.Data && string(bytes.TrimSuffix(line, []byte("\n"))) == want {
				return out, nil
			}
		}
		return nil, &refs.UnavailableError{Op: "advertising a pin", Cause: errors.New("the pinned ref is not at the pinned SHA")}
	}
}

// serveShared answers a request from a shared entry (hit or miss: the
// generation runs apart from it). It answers the status sent and the
// bytes of body written; an error is an answer not sent (the generation
// failed before its header block: its error). A generation that fails
// after the header was sent cuts the answer short, as git failing does.
// A finished entry is sent with its Content-Length, from its file, which
// net/http hands to sendfile; one still generated is streamed as it
// grows.
func (s *Server) serveShared(w http.ResponseWriter, rd *packcache.Reader, project string) (status int, written int64, err error) {
	dw := s.deadlined(w)
	defer dw.clear()
	cr := &countReader{r: rd}
	br := bufio.NewReaderSize(cr, 4<<10)
	status, header, err := readCGIHeader(br)
	if err != nil {
		var refused *Error
		if errors.As(err, &refused) || refs.IsUnavailable(err) {
			return 0, 0, err
		}
		return 0, 0, &refs.UnavailableError{Op: "running git http-backend", Cause: err}
	}
	copyHeader(dw.Header(), header)
	if rest, n, ok := rd.Rest(cr.n - int64(br.Buffered())); ok {
		dw.Header().Set("Content-Length", strconv.FormatInt(n, 10))
		dw.WriteHeader(status)
		written, err = dw.sendFile(rest)
	} else {
		dw.WriteHeader(status)
		written, err = streamTo(dw, br)
	}
	var notKept *errNotKept
	if err != nil && !errors.As(err, &notKept) {
		// The answer is on its way: only the log can tell.
		s.logger.Warn("serving git from the cache", "project", project, "err", err, "bytes", written)
	}
	return status, written, nil
}

// countReader counts what passes.
type countReader struct {
	r io.Reader
	n int64
}

func (c *countReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += int64(n)
	return n, err
}

// sendStep is how much of a file one write deadline covers: a client
// must take it within the write stall.
const sendStep = 1 << 20

// sendFile copies r (a file) to the connection in steps of sendStep,
// each under its own write deadline, through the ReadFrom of net/http's
// writer (found below the wrappers), which sends a file with sendfile.
func (d *deadlineWriter) sendFile(r *io.LimitedReader) (int64, error) {
	var to io.Writer = d.ResponseWriter
	for w := d.ResponseWriter; w != nil; {
		if _, ok := w.(io.ReaderFrom); ok {
			to = w
			break
		}
		u, ok := w.(interface{ Unwrap() http.ResponseWriter })
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	var written int64
	for r.N > 0 {
		step := &io.LimitedReader{R: r.R, N: min(r.N, sendStep)}
		d.arm()
		n, err := io.Copy(to, step)
		r.N -= n
		written += n
		if err != nil {
			return written, err
		}
		if n == 0 {
			return written, io.ErrUnexpectedEOF
		}
	}
	return written, nil
}

// sharedRun is the run that generates a shared answer: a v0
// advertisement is also checked to list the pin (pinnedAdvertisement).
func sharedRun(b backendRun, scope fetchScope) backendRun {
	if b.rewrite != nil {
		b.rewrite = pinnedAdvertisement(scope)
	}
	return b
}

package githttp

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/refkeeper/refkeeper/gitexec"
	"github.com/refkeeper/refkeeper/pktline"
	"github.com/refkeeper/refkeeper/refs"
)

// maxRequestBody bounds a buffered fetch negotiation. git sends large
// negotiations chunked; bodies are read whole (a scoped one is checked
// before git sees it) and passed on with a length. This keeps a client
// from filling memory.
const maxRequestBody = 32 << 20

// bodyStep is how much of a body is read (and taken from the budget) at
// a time.
const bodyStep = 64 << 10

// readBody reads a request body whole (up to the limit); a gzip body (git
// compresses large negotiations) is inflated here, under the same limit,
// and git gets it plain. What it holds is taken from the budget as it is
// read, waited for until wait has passed (then 503: too many bodies at
// once); held answers how much, for the caller to give back once the body
// is no longer needed.
func readBody(r *http.Request, budget *byteBudget, wait time.Duration) (body []byte, held int64, err error) {
	var in io.Reader = http.NoBody
	if r.Body != nil {
		in = r.Body
	}
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		z, err := gzip.NewReader(in)
		if err != nil {
			return nil, 0, badRequest("reading gzip request body: %v", err)
		}
		defer z.Close()
		in = z
	default:
		return nil, 0, &Error{Status: http.StatusUnsupportedMediaType,
			Message: fmt.Sprintf("content encoding %q is not supported: use gzip or none", enc)}
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	in = io.LimitReader(in, maxRequestBody+1)
	// The body is read in steps of its own, joined once at the end: a
	// slice grown step by step would leave about three times the body in
	// garbage behind it, memory the budget does not see.
	var steps [][]byte
	size := 0
	for {
		if err := budget.take(ctx, bodyStep); err != nil {
			budget.give(held)
			if r.Context().Err() != nil {
				return nil, 0, err
			}
			return nil, 0, &Error{Status: http.StatusServiceUnavailable,
				Message: "too many fetch requests being read at once; retry later"}
		}
		held += bodyStep
		step := make([]byte, bodyStep)
		n, rerr := io.ReadFull(in, step)
		steps = append(steps, step[:n])
		size += n
		// What was not read is given back.
		budget.give(int64(bodyStep - n))
		held -= int64(bodyStep - n)
		switch {
		case rerr == io.EOF || rerr == io.ErrUnexpectedEOF:
			if size > maxRequestBody {
				budget.give(held)
				return nil, 0, &http.MaxBytesError{Limit: maxRequestBody}
			}
			if len(steps) == 1 {
				return steps[0], held, nil
			}
			return slices.Concat(steps...), held, nil
		case errors.Is(rerr, os.ErrDeadlineExceeded):
			budget.give(held)
			return nil, 0, &Error{Status: http.StatusRequestTimeout, Message: "the request body did not arrive in time"}
		case rerr != nil:
			budget.give(held)
			return nil, 0, badRequest("reading request body: %v", rerr)
		}
	}
}

// backendRun is one request for git http-backend, as the server rebuilt
// it: nothing of the client's request reaches git but what is here.
type backendRun struct {
	repoPath    string // the repository, resolved inside the repos root
	method      string
	rest        string // "/info/refs", "/git-upload-pack"
	remoteAddr  string
	contentType string
	version     int // the protocol version the server read
	config      [][2]string
	body        []byte // nil: none (GET)
	project     string // for logs
	// env is added to the CGI environment: the pack cache's hook.
	env []string
	// rewrite, when set, takes a 200's whole body and answers the one
	// sent instead.
	rewrite func([]byte) ([]byte, error)
	// head, when set, reads the start of a 200's body and writes what is
	// sent in its place; the rest is streamed as git writes it.
	head func(r *bufio.Reader, w io.Writer) error
}

// cgiEnv is the CGI environment git http-backend gets on top of the
// runner's allow list: the variables it reads, built from the request
// the server rebuilt, never from the client's headers. So no header
// reaches git but Content-Type and the protocol version the server itself
// read (a client's Git_Protocol or GIT_PROTOCOL would otherwise become
// HTTP_GIT_PROTOCOL), no query but the service, and no Authorization.
// PATH_INFO is "/<repo dir name>/<rest>" below GIT_PROJECT_ROOT, the
// repository's resolved parent: git http-backend serves nothing else.
func (b backendRun) cgiEnv() []string {
	env := []string{
		"GIT_PROJECT_ROOT=" + filepath.Dir(b.repoPath),
		"GIT_HTTP_EXPORT_ALL=1",
		fmt.Sprintf("GIT_HTTP_MAX_REQUEST_BUFFER=%d", maxRequestBody),
		"GATEWAY_INTERFACE=CGI/1.1",
		"SERVER_PROTOCOL=HTTP/1.1",
		"REQUEST_METHOD=" + b.method,
		"PATH_INFO=/" + filepath.Base(b.repoPath) + b.rest,
		"QUERY_STRING=",
	}
	if b.rest == "/info/refs" { // the one query splitPath admits
		env[len(env)-1] = "QUERY_STRING=service=git-upload-pack"
	}
	if host, _, err := net.SplitHostPort(b.remoteAddr); err == nil {
		env = append(env, "REMOTE_ADDR="+host)
	}
	if b.contentType != "" {
		env = append(env, "CONTENT_TYPE="+b.contentType)
	}
	if b.body != nil {
		env = append(env, "CONTENT_LENGTH="+strconv.Itoa(len(b.body)))
	}
	if b.version == protocolV2 {
		env = append(env, "HTTP_GIT_PROTOCOL=version=2")
	}
	return append(env, b.env...)
}

// args are http-backend's command line: the request's git configuration
// (given with -c, git passes it on to the upload-pack it runs).
func (b backendRun) args() []string {
	var args []string
	for _, kv := range b.config {
		args = append(args, "-c", kv[0]+"="+kv[1])
	}
	return append(args, "http-backend")
}

// started is a `git http-backend` whose CGI header block was read: its
// body is out, finish waits for it once out is read (stop first ends a git
// whose answer is no longer wanted: SIGTERM to its group, as at the
// bound), and stderr is what it said, kept bounded.
type started struct {
	out    *bufio.Reader
	status int
	header http.Header
	finish func(stop bool) error
	stderr *gitexec.Stderr
}

// startBackend runs git http-backend for b through the one git runner (so
// it ends at the Timeout or when ctx does, with the upload-pack it
// started, like every git process): the body on its stdin, its header
// block read. An error is *refs.UnavailableError: git could not be
// started, or ended (or was ended) before its header block was whole.
// cancel must end ctx once git is done with.
func (s *Server) startBackend(ctx context.Context, cancel context.CancelFunc, b backendRun) (*started, error) {
	cmd := s.git.CommandWith(ctx, gitexec.Options{Dir: b.repoPath, Env: b.cgiEnv()}, b.args()...)
	if b.body != nil {
		cmd.Stdin = bytes.NewReader(b.body)
	}
	// git's stderr (upload-pack's progress when the client asked for no
	// side-band, hundreds of lines per fetch) is kept bounded and logged
	// once, only when git failed: a client must not be able to fill the log.
	stderr := &gitexec.Stderr{}
	cmd.Stderr = stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, &refs.UnavailableError{Op: "running git http-backend", Cause: err}
	}
	if err := cmd.Start(); err != nil {
		// Its binary gone (replaced during an upgrade), no memory or
		// processes left to fork: nothing was served; the client may
		// retry.
		return nil, &refs.UnavailableError{Op: "running git http-backend", Cause: err}
	}
	// Wait closes the pipe only after the grace, so it is drained first.
	finish := func(stop bool) error {
		if stop {
			cancel()
		}
		_, _ = io.Copy(io.Discard, stdout)
		return cmd.Wait()
	}
	out := bufio.NewReader(stdout)
	status, header, err := readCGIHeader(out)
	if err != nil {
		waitErr := finish(true)
		s.logger.Warn("serving git", "project", b.project, "err", err, "exit", waitErr, "stderr", stderr.String())
		return nil, &refs.UnavailableError{Op: "running git http-backend", Cause: errors.Join(err, waitErr)}
	}
	return &started{out: out, status: status, header: header, finish: finish, stderr: stderr}, nil
}

// runBackend speaks CGI to git http-backend (startBackend) and streams
// the rest of its answer to w as git writes it. It answers the status
// sent and the bytes of body written. An error is an answer not sent:
// startBackend's, or a rewrite that failed. A failure after the header
// was sent is logged: the client sees a response cut short.
func (s *Server) runBackend(ctx context.Context, w http.ResponseWriter, b backendRun) (status int, written int64, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	dw := s.deadlined(w)
	defer dw.clear()
	w = dw
	g, err := s.startBackend(ctx, cancel, b)
	if err != nil {
		return 0, 0, err
	}
	out, status, header, finish, stderr := g.out, g.status, g.header, g.finish, g.stderr
	if b.rewrite != nil && status == http.StatusOK {
		whole, rerr := io.ReadAll(out)
		waitErr := finish(rerr != nil)
		if rerr == nil && waitErr != nil {
			rerr = waitErr
		}
		if rerr != nil {
			s.logger.Warn("serving git", "project", b.project, "err", rerr, "stderr", stderr.String())
			return 0, 0, &refs.UnavailableError{Op: "running git http-backend", Cause: rerr}
		}
		if whole, err = b.rewrite(whole); err != nil {
			return 0, 0, err
		}
		header.Del("Content-Length")
		copyHeader(w.Header(), header)
		w.WriteHeader(status)
		n, err := w.Write(whole)
		return status, int64(n), err
	}
	copyHeader(w.Header(), header)
	w.WriteHeader(status)
	var headErr error
	var headN int64
	if b.head != nil && status == http.StatusOK {
		cw := &countWriter{w: w}
		headErr = b.head(out, cw)
		headN = cw.n
	}
	written, copyErr := int64(0), headErr
	if headErr == nil {
		written, copyErr = streamTo(dw, out)
	}
	written += headN
	if waitErr := finish(copyErr != nil); copyErr != nil || waitErr != nil {
		// The answer is on its way: only the log can tell.
		s.logger.Warn("serving git", "project", b.project, "err", errors.Join(copyErr, waitErr), "bytes", written, "stderr", stderr.String())
	}
	return status, written, nil
}

// readCGIHeader reads a CGI program's header block: its Status line (none:
// 200) and the other fields.
func readCGIHeader(r *bufio.Reader) (int, http.Header, error) {
	mime, err := textproto.NewReader(r).ReadMIMEHeader()
	if err != nil {
		return 0, nil, fmt.Errorf("reading git http-backend's CGI header: %w", err)
	}
	header := http.Header(mime)
	status := http.StatusOK
	if line := header.Get("Status"); line != "" {
		code, _, _ := strings.Cut(line, " ")
		if status, err = strconv.Atoi(code); err != nil || status < 100 || status > 999 {
			return 0, nil, fmt.Errorf("git http-backend's CGI status %q", line)
		}
		header.Del("Status")
	}
	return status, header, nil
}

// copyHeader adds git's header fields to the response's.
func copyHeader(dst, src http.Header) {
	for k, v := range src {
		dst[k] = append(dst[k], v...)
	}
}

// countWriter counts what passes.
type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(b []byte) (int, error) {
	n, err := c.w.Write(b)
	c.n += int64(n)
	return n, err
}

// DefaultWriteStall is how long one write of an answer may wait for a
// client that reads nothing before the answer is cut.
const DefaultWriteStall = 60 * time.Second

// deadlineWriter bounds every write of an answer on the connection: a
// client that stops reading makes a write fail after the stall (or at the
// end of the whole answer's time, the git timeout), instead of blocking it
// for as long as the connection stays open, and with it the run's
// --max-git-http turn. The server itself sets no write deadline.
type deadlineWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
	end   time.Time
}

// deadlined wraps w for one run: its answer ends within the git timeout.
func (s *Server) deadlined(w http.ResponseWriter) *deadlineWriter {
	return &deadlineWriter{ResponseWriter: w, rc: http.NewResponseController(w),
		stall: s.writeStall, end: time.Now().Add(s.Timeout())}
}

// arm sets the deadline of the next write. A writer that cannot take one
// (not a connection of net/http) is written to as it is.
func (d *deadlineWriter) arm() {
	at := time.Now().Add(d.stall)
	if at.After(d.end) {
		at = d.end
	}
	_ = d.rc.SetWriteDeadline(at)
}

// clear lifts the deadline once the run is over: a kept-alive connection's
// next request starts without it.
func (d *deadlineWriter) clear() { _ = d.rc.SetWriteDeadline(time.Time{}) }

func (d *deadlineWriter) Write(b []byte) (int, error) {
	d.arm()
	return d.ResponseWriter.Write(b)
}

// Flush sends what is buffered, under the same deadline.
func (d *deadlineWriter) Flush() error {
	d.arm()
	if err := d.rc.Flush(); !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// Unwrap lets a ResponseController reach the connection.
func (d *deadlineWriter) Unwrap() http.ResponseWriter { return d.ResponseWriter }

// streamTo copies git's body to w as it comes, flushing each piece so a
// pack reaches the client while git writes it. A flush that fails (the
// client stopped reading) ends the copy.
func streamTo(w *deadlineWriter, r io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var written int64
	for {
		n, err := r.Read(buf)
		if n > 0 {
			m, werr := w.Write(buf[:n])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
			if ferr := w.Flush(); ferr != nil {
				return written, ferr
			}
		}
		if err == io.EOF {
			return written, nil
		}
		if err != nil {
			return written, err
		}
	}
}

// stripSymrefs drops the symref=... capabilities from a v0 ref
// advertisement: the capabilities follow a NUL on the first ref line.
func stripSymrefs(advert []byte) ([]byte, error) {
	packets, err := pktline.Decode(advert)
	if err != nil {
		return nil, errBadAdvertisement
	}
	for i, p := range packets {
		switch p.Kind {
		case pktline.Flush:
			continue
		case pktline.Data:
		default:
			return nil, errBadAdvertisement
		}
		refPart, caps, ok := bytes.Cut(p.Data, []byte{0})
		if !ok {
			continue
		}
		var kept [][]byte
		for _, c := range bytes.Fields(caps) {
			if !bytes.HasPrefix(c, []byte("symref=")) {
				kept = append(kept, c)
			}
		}
		line := append(append(slices.Clip(refPart), 0), append(bytes.Join(kept, []byte(" ")), '\n')...)
		packets[i] = pktline.Packet{Kind: pktline.Data, Data: line}
	}
	out, err := pktline.Encode(packets)
	if err != nil {
		return nil, errBadAdvertisement
	}
	return out, nil
}

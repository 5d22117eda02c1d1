package api

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/url"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/labstack/echo/v4"

	"github.com/refkeeper/refkeeper/refs"
)

// maxGitRequestBody bounds a buffered fetch negotiation. git sends large
// negotiations chunked, which net/http/cgi refuses, so bodies are read whole
// and passed on with a length; this keeps a client from filling memory.
const maxGitRequestBody = 32 << 20

// notAProjectLabel stands in the metrics for a name that is not a project:
// malformed, or with no repository behind it.
const notAProjectLabel = "invalid"

// gitService is one smart-HTTP endpoint of a repository.
type gitService int

const (
	uploadPackAdvert gitService = iota + 1 // GET info/refs?service=git-upload-pack
	uploadPack                             // POST git-upload-pack
	receivePack                            // push, in either form: refused
)

// gitServer serves repositories read-only over git's smart HTTP protocol by
// running `git http-backend` (the real git) as a CGI program.
type gitServer struct {
	pins    Pins
	tokens  *tokenSet
	signer  *fetchSigner
	gitPath string
	logger  *slog.Logger
	metrics *httpMetrics
}

func newGitServer(pins Pins, tokens *tokenSet, signer *fetchSigner, gitBinary string, logger *slog.Logger, m *httpMetrics) (*gitServer, error) {
	if gitBinary == "" {
		gitBinary = "git"
	}
	path, err := exec.LookPath(gitBinary)
	if err != nil {
		return nil, fmt.Errorf("git smart HTTP: %w", err)
	}
	return &gitServer{pins: pins, tokens: tokens, signer: signer, gitPath: path, logger: logger, metrics: m}, nil
}

// splitGitPath splits "/git/<project>.git/<rest>" into the project and the
// service. Project names may contain ".git" themselves, so the service
// suffix decides where the name ends.
func splitGitPath(path, query string) (project string, svc gitService, rest string, err error) {
	p, ok := strings.CutPrefix(path, "/git/")
	if !ok {
		return "", 0, "", errGitNotFound
	}
	for _, s := range []struct {
		suffix string
		svc    gitService
	}{
		{".git/info/refs", uploadPackAdvert},
		{".git/git-upload-pack", uploadPack},
		{".git/git-receive-pack", receivePack},
	} {
		if name, ok := strings.CutSuffix(p, s.suffix); ok {
			svc := s.svc
			if svc == uploadPackAdvert && query != "service=git-upload-pack" {
				if query == "service=git-receive-pack" {
					svc = receivePack
				} else {
					return "", 0, "", errDumbHTTP
				}
			}
			return name, svc, strings.TrimPrefix(s.suffix, ".git"), nil
		}
	}
	return "", 0, "", errGitNotFound
}

var (
	errGitNotFound = &httpError{Status: http.StatusNotFound, Code: codeNotFound,
		Message: "not a git smart-HTTP path: use /git/<project>.git"}
	errDumbHTTP = &httpError{Status: http.StatusForbidden, Code: codeForbidden,
		Message: "only git's smart HTTP protocol is served (service=git-upload-pack)"}
	errPush = &httpError{Status: http.StatusForbidden, Code: codeForbidden,
		Message: "repositories are read-only: pushing is refused"}
	errGitAuth = &httpError{Status: http.StatusUnauthorized, Code: codeUnauthorized,
		Message: "missing or wrong token: use an API token or the pin's fetch_token"}
)

// gitChallenge makes git ask its credential helpers, and report a refusal
// clearly, instead of failing silently.
const gitChallenge = `Basic realm="refkeeper"`

// authorize accepts an API token (read access to every project) or a scoped
// fetch token (one pipeline ref, while its pin lives). It answers the scope,
// nil for full access.
func (g *gitServer) authorize(r *http.Request) (*fetchClaims, error) {
	token := presentedToken(r, true)
	if g.tokens.valid(token) {
		return nil, nil
	}
	claims, err := g.signer.verify(token)
	if err != nil {
		return nil, errGitAuth
	}
	return &claims, nil
}

// checkScope admits a scoped token only to its own project, and only while
// the pin it was issued for is alive; it answers what the token may fetch.
func (g *gitServer) checkScope(r *http.Request, scope *fetchClaims, p refs.Project) (fetchScope, error) {
	if scope.Project != string(p) {
		return fetchScope{}, errGitAuth
	}
	pin, err := g.pins.Get(r.Context(), p, refs.PipelineID(scope.PipelineID))
	if refs.IsUnavailable(err) {
		return fetchScope{}, err
	}
	if err != nil || !scope.matches(pin) {
		return fetchScope{}, errGitAuth
	}
	return fetchScope{ref: pin.Ref().String(), sha: string(pin.SHA)}, nil
}

// backendConfig is git configuration for every http-backend run: no
// repository hook runs on the server's behalf.
var backendConfig = [][2]string{{"core.hooksPath", "/dev/null"}}

// scopedConfig makes upload-pack advertise one ref: every other ref (and
// HEAD) is hidden, and in v0 wants of unadvertised objects are refused.
// v2 lets a client want any object whatever this says: fetchScope.filter
// checks those requests before git sees them.
func scopedConfig(ref string) [][2]string {
	return [][2]string{
		{"uploadpack.hideRefs", "refs/"},
		{"uploadpack.hideRefs", "HEAD"},
		{"uploadpack.hideRefs", "!" + ref},
		{"uploadpack.allowAnySHA1InWant", "false"},
		{"uploadpack.allowReachableSHA1InWant", "false"},
		{"uploadpack.allowTipSHA1InWant", "false"},
		// uploadpack.allowRefInWant stays off: git 2.39's upload-pack
		// sends wanted-refs before shallow-info, which its own client
		// cannot read in a shallow fetch. A want-ref that filter lets
		// through (the pinned ref) is then refused by git itself.
	}
}

// gitEnv is the whole environment of a git process the server starts,
// built from nothing, never from os.Environ(): no secret of this process
// (its tokens, keys, credentials) and no setting of its user's or the
// system's git config reaches git; config is passed as GIT_CONFIG_*.
func (g *gitServer) gitEnv(config [][2]string) []string {
	env := []string{
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_CONFIG_GLOBAL=/dev/null",
		"PATH=" + filepath.Dir(g.gitPath) + ":/usr/bin:/bin",
		"LC_ALL=C",
		fmt.Sprintf("GIT_CONFIG_COUNT=%d", len(config)),
	}
	for i, kv := range config {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, kv[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, kv[1]))
	}
	return env
}

// backendEnv is the environment git http-backend gets on top of the CGI
// variables net/http/cgi derives from the request it is handed (which
// carries only allow-listed headers, see backendRequest). net/http/cgi
// itself adds PATH (overridden here) and the dynamic loader's
// LD_LIBRARY_PATH when this process has one, nothing else.
func (g *gitServer) backendEnv(repoPath string, config [][2]string) []string {
	return append([]string{
		"GIT_PROJECT_ROOT=" + filepath.Dir(repoPath),
		"GIT_HTTP_EXPORT_ALL=1",
		fmt.Sprintf("GIT_HTTP_MAX_REQUEST_BUFFER=%d", maxGitRequestBody),
	}, g.gitEnv(config)...)
}

// haveWalk bounds how much of a pinned commit's history is read to check
// a scoped fetch's haves: older haves are dropped, which makes a pack
// bigger, never wrong, and keeps the check's cost fixed.
const haveWalk = 10000

// reachFrom lists the commits sha reaches, newest first, up to haveWalk.
func (g *gitServer) reachFrom(ctx context.Context, p refs.Project, sha string) func() (map[string]bool, error) {
	return func() (map[string]bool, error) {
		ids, err := g.pins.Ancestors(ctx, p, refs.ObjectID(sha), haveWalk)
		if err != nil {
			return nil, err
		}
		reached := make(map[string]bool, len(ids))
		for _, id := range ids {
			reached[string(id)] = true
		}
		return reached, nil
	}
}

// backendRequest is the request net/http/cgi turns into git's
// environment: a new one, not a copy of the client's, so no header
// reaches git but Content-Type and the protocol version the server
// itself read (net/http/cgi makes every header an HTTP_* variable, and
// Git_Protocol, GIT_PROTOCOL and Git-Protocol would all become
// HTTP_GIT_PROTOCOL); no query but the service. PATH_INFO is
// "/<repo dir name>/<rest>" below GIT_PROJECT_ROOT, the repository's
// resolved parent: git http-backend serves nothing else.
func backendRequest(r *http.Request, repoPath, rest string, version int, body []byte) *http.Request {
	req := (&http.Request{
		Method:     r.Method,
		URL:        &url.URL{Path: "/" + filepath.Base(repoPath) + rest},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     http.Header{},
		Host:       "localhost",
		RemoteAddr: r.RemoteAddr,
		Body:       http.NoBody,
	}).WithContext(r.Context())
	if rest == "/info/refs" { // the one query splitGitPath admits
		req.URL.RawQuery = "service=git-upload-pack"
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	if version == protocolV2 {
		req.Header.Set("Git-Protocol", "version=2")
	}
	if body != nil {
		req.Body = io.NopCloser(bytes.NewReader(body))
		req.ContentLength = int64(len(body))
	}
	return req
}

func (g *gitServer) serve(c echo.Context) error {
	r := c.Request()
	scope, err := g.authorize(r)
	if err != nil {
		c.Response().Header().Set(echo.HeaderWWWAuthenticate, gitChallenge)
		return err
	}
	name, svc, rest, err := splitGitPath(r.URL.Path, r.URL.RawQuery)
	if err != nil {
		return err
	}
	// The project is resolved before any answer is chosen, so that metrics
	// are labelled with real projects only: a name is the client's to make
	// up, and each new label value would be a new time series kept forever.
	// The answers still come in the order below, so a scoped token learns
	// nothing about other projects.
	p, nameErr := refs.ParseProject(name)
	repoPath, repoErr := "", nameErr
	if nameErr == nil {
		repoPath, repoErr = g.pins.RepoPath(p)
	}
	label := string(p)
	if repoErr != nil {
		label = notAProjectLabel
	}
	if svc == receivePack {
		g.metrics.fetch(label, "refused")
		return errPush
	}
	if (svc == uploadPackAdvert) != (r.Method == http.MethodGet || r.Method == http.MethodHead) ||
		(svc == uploadPack) != (r.Method == http.MethodPost) {
		return echo.ErrMethodNotAllowed
	}
	if nameErr != nil {
		return nameErr
	}
	config := backendConfig
	var allowed fetchScope
	if scope != nil {
		if allowed, err = g.checkScope(r, scope, p); err != nil {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, gitChallenge)
			g.metrics.fetch(label, "refused")
			return err
		}
		config = append(slices.Clip(backendConfig), scopedConfig(allowed.ref)...)
	}
	if repoErr != nil {
		return repoErr
	}
	allowed.reach = g.reachFrom(r.Context(), p, allowed.sha)
	version := protocolVersion(r.Header)
	var body []byte
	if svc == uploadPack {
		if body, err = readGitBody(r); err != nil {
			return err
		}
		if scope != nil {
			if body, err = allowed.filter(version, body); err != nil {
				g.metrics.fetch(label, "refused")
				return err
			}
		}
	}
	hostErrors := &cgiLog{logger: g.logger, project: label}
	handler := &cgi.Handler{
		Path:   g.gitPath,
		Args:   []string{"http-backend"},
		Root:   "/",
		Dir:    repoPath,
		Env:    g.backendEnv(repoPath, config),
		Stderr: &logWriter{logger: g.logger, project: label},
		Logger: log.New(hostErrors, "", 0),
	}
	counter := &countingWriter{ResponseWriter: c.Response().Writer}
	cgiReq := backendRequest(r, repoPath, rest, version, body)
	if scope != nil && svc == uploadPackAdvert && version != protocolV2 {
		// A v0 advertisement names HEAD's target in its capabilities
		// (symref=HEAD:refs/heads/main) even with HEAD hidden: it is
		// rewritten before it is sent. It is one ref long.
		buf := &bufferedResponse{header: http.Header{}}
		handler.ServeHTTP(buf, cgiReq)
		if err := buf.replay(counter, stripSymrefs); err != nil {
			return err
		}
	} else {
		handler.ServeHTTP(counter, cgiReq)
	}
	var failed error
	if counter.held && hostErrors.first != "" {
		// net/http/cgi answered for git with an empty 500: git http-backend
		// could not be started (no memory or processes left, its binary
		// replaced during an upgrade) or ended before it answered (killed).
		// Nothing was served; the client may retry.
		failed = &refs.UnavailableError{Op: "running git http-backend", Cause: errors.New(hostErrors.first)}
	} else {
		counter.release()
	}
	outcome := "ok"
	if failed != nil || counter.status >= 400 {
		outcome = "error"
	}
	if svc == uploadPack {
		g.metrics.fetch(label, outcome)
	}
	g.metrics.gitBytes(label, counter.bytes)
	return failed
}

// readGitBody reads a request body whole (up to the limit), so that it has a
// length (net/http/cgi refuses chunked bodies) and so that a scoped
// request can be checked; a gzip body (git compresses large negotiations)
// is inflated here, under the same limit, and git gets it plain.
func readGitBody(r *http.Request) ([]byte, error) {
	var in io.Reader = http.NoBody
	if r.Body != nil {
		in = r.Body
	}
	switch enc := r.Header.Get("Content-Encoding"); enc {
	case "", "identity":
	case "gzip", "x-gzip":
		z, err := gzip.NewReader(in)
		if err != nil {
			return nil, badRequest("reading gzip request body: %v", err)
		}
		defer z.Close()
		in = z
	default:
		return nil, &httpError{Status: http.StatusUnsupportedMediaType, Code: codeUnsupportedMedia,
			Message: fmt.Sprintf("content encoding %q is not supported: use gzip or none", enc)}
	}
	body, err := io.ReadAll(io.LimitReader(in, maxGitRequestBody+1))
	if err != nil {
		return nil, badRequest("reading request body: %v", err)
	}
	if len(body) > maxGitRequestBody {
		return nil, &http.MaxBytesError{Limit: maxGitRequestBody}
	}
	return body, nil
}

// bufferedResponse keeps a whole answer of net/http/cgi, to be rewritten
// before it is passed on.
type bufferedResponse struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (b *bufferedResponse) Header() http.Header { return b.header }

func (b *bufferedResponse) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}

func (b *bufferedResponse) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

// replay passes the answer on to w, its body through rewrite when it is
// a 200.
func (b *bufferedResponse) replay(w http.ResponseWriter, rewrite func([]byte) ([]byte, error)) error {
	body := b.body.Bytes()
	if b.status == http.StatusOK {
		var err error
		if body, err = rewrite(body); err != nil {
			return err
		}
	}
	for k, v := range b.header {
		w.Header()[k] = v
	}
	w.Header().Del("Content-Length")
	if b.status != 0 {
		w.WriteHeader(b.status)
	}
	if len(body) > 0 {
		_, err := w.Write(body)
		return err
	}
	return nil
}

var errBadAdvertisement = &httpError{Status: http.StatusBadGateway, Code: codeInternal,
	Message: "git http-backend answered an advertisement that could not be read"}

// stripSymrefs drops the symref=... capabilities from a v0 ref
// advertisement: the capabilities follow a NUL on the first ref line.
func stripSymrefs(advert []byte) ([]byte, error) {
	var out bytes.Buffer
	for len(advert) > 0 {
		if len(advert) < 4 {
			return nil, errBadAdvertisement
		}
		n, err := strconv.ParseUint(string(advert[:4]), 16, 16)
		if err != nil || n != 0 && (n < 4 || int(n) > len(advert)) {
			return nil, errBadAdvertisement
		}
		if n == 0 {
			out.WriteString("0000")
			advert = advert[4:]
			continue
		}
		line := advert[4:n]
		advert = advert[n:]
		if refPart, caps, ok := bytes.Cut(line, []byte{0}); ok {
			var kept [][]byte
			for _, c := range bytes.Fields(caps) {
				if !bytes.HasPrefix(c, []byte("symref=")) {
					kept = append(kept, c)
				}
			}
			line = append(append(slices.Clip(refPart), 0), append(bytes.Join(kept, []byte(" ")), '\n')...)
		}
		fmt.Fprintf(&out, "%04x", len(line)+4)
		out.Write(line)
	}
	return out.Bytes(), nil
}

// countingWriter counts the bytes and keeps the status of a response. A 500
// is held back until a body follows or release is called, so that serve can
// still answer net/http/cgi's own, empty, 500 in its place.
type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
	held   bool // status is a 500 not yet passed on
}

func (w *countingWriter) WriteHeader(code int) {
	w.status = code
	if code == http.StatusInternalServerError {
		w.held = true
		return
	}
	w.ResponseWriter.WriteHeader(code)
}

// release passes on a held status.
func (w *countingWriter) release() {
	if w.held {
		w.held = false
		w.ResponseWriter.WriteHeader(w.status)
	}
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.release()
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush lets git's streamed pack reach the client as it is written.
func (w *countingWriter) Flush() {
	w.release()
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// cgiLog takes net/http/cgi's own log lines (git could not be started, ended
// before it answered, or a copy failed) into the structured log, instead of
// the standard logger, and keeps the first for serve to decide on.
type cgiLog struct {
	logger  *slog.Logger
	project string
	first   string
}

func (w *cgiLog) Write(b []byte) (int, error) {
	msg := strings.TrimSpace(string(b))
	if w.first == "" {
		w.first = msg
	}
	w.logger.Warn("serving git", "project", w.project, "err", msg)
	return len(b), nil
}

// logWriter turns http-backend's stderr into log lines.
type logWriter struct {
	logger  *slog.Logger
	project string
}

func (w *logWriter) Write(b []byte) (int, error) {
	if msg := strings.TrimSpace(string(b)); msg != "" {
		w.logger.Warn("git http-backend", "project", w.project, "stderr", msg)
	}
	return len(b), nil
}

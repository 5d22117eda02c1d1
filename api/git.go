package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"os/exec"
	"path/filepath"
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
// the pin it was issued for is alive.
func (g *gitServer) checkScope(r *http.Request, scope *fetchClaims, p refs.Project) error {
	if scope.Project != string(p) {
		return errGitAuth
	}
	pin, err := g.pins.Get(r.Context(), p, refs.PipelineID(scope.PipelineID))
	if refs.IsUnavailable(err) {
		return err
	}
	if err != nil || !scope.matches(pin) {
		return errGitAuth
	}
	return nil
}

// scopedEnv makes upload-pack advertise one ref and serve only objects
// reachable from it: every other ref (and HEAD) is hidden, wants of other
// objects are refused. Protocol v2 lets a client want any object, so a
// scoped fetch is held to v0, where stateless wants must be reachable from
// the advertised ref.
func scopedEnv(id int64) []string {
	settings := [][2]string{
		{"uploadpack.hideRefs", "refs/"},
		{"uploadpack.hideRefs", "HEAD"},
		{"uploadpack.hideRefs", "!" + refs.PipelineID(id).Ref().String()},
		{"uploadpack.allowAnySHA1InWant", "false"},
		{"uploadpack.allowReachableSHA1InWant", "false"},
		{"uploadpack.allowTipSHA1InWant", "false"},
	}
	env := []string{fmt.Sprintf("GIT_CONFIG_COUNT=%d", len(settings))}
	for i, kv := range settings {
		env = append(env, fmt.Sprintf("GIT_CONFIG_KEY_%d=%s", i, kv[0]), fmt.Sprintf("GIT_CONFIG_VALUE_%d=%s", i, kv[1]))
	}
	return env
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
	if scope != nil {
		if err := g.checkScope(r, scope, p); err != nil {
			c.Response().Header().Set(echo.HeaderWWWAuthenticate, gitChallenge)
			g.metrics.fetch(label, "refused")
			return err
		}
	}
	if repoErr != nil {
		return repoErr
	}
	if err := bufferBody(r); err != nil {
		return err
	}
	// PATH_INFO is "/<repo dir name>/<rest>" below GIT_PROJECT_ROOT, the
	// repository's resolved parent: git http-backend serves nothing else.
	cgiReq := r.Clone(r.Context())
	cgiReq.URL.Path = "/" + filepath.Base(repoPath) + rest
	cgiReq.URL.RawPath = ""
	// net/http/cgi hands every header to git as HTTP_*: the token has no
	// business in git's environment.
	cgiReq.Header.Del("Authorization")
	env := []string{
		"GIT_PROJECT_ROOT=" + filepath.Dir(repoPath),
		"GIT_HTTP_EXPORT_ALL=1",
		"GIT_CONFIG_NOSYSTEM=1",
	}
	if scope != nil {
		env = append(env, scopedEnv(scope.PipelineID)...)
		cgiReq.Header.Del("Git-Protocol")
	}
	// Otherwise the Git-Protocol header reaches http-backend as
	// HTTP_GIT_PROTOCOL, which it turns into GIT_PROTOCOL (v2).
	hostErrors := &cgiLog{logger: g.logger, project: label}
	handler := &cgi.Handler{
		Path:   g.gitPath,
		Args:   []string{"http-backend"},
		Root:   "/",
		Dir:    repoPath,
		Env:    env,
		Stderr: &logWriter{logger: g.logger, project: label},
		Logger: log.New(hostErrors, "", 0),
	}
	counter := &countingWriter{ResponseWriter: c.Response().Writer}
	handler.ServeHTTP(counter, cgiReq)
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

// bufferBody reads a request body whole (up to the limit) so that it has a
// length: net/http/cgi refuses chunked bodies.
func bufferBody(r *http.Request) error {
	if r.Body == nil || r.Method != http.MethodPost {
		return nil
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxGitRequestBody+1))
	if err != nil {
		return badRequest("reading request body: %v", err)
	}
	if len(body) > maxGitRequestBody {
		return &http.MaxBytesError{Limit: maxGitRequestBody}
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.ContentLength = int64(len(body))
	r.TransferEncoding = nil
	return nil
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

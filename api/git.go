package api

import (
	"bytes"
	"fmt"
	"io"
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
	gitPath string
	logger  *slog.Logger
	metrics *httpMetrics
}

func newGitServer(pins Pins, gitBinary string, logger *slog.Logger, m *httpMetrics) (*gitServer, error) {
	if gitBinary == "" {
		gitBinary = "git"
	}
	path, err := exec.LookPath(gitBinary)
	if err != nil {
		return nil, fmt.Errorf("git smart HTTP: %w", err)
	}
	return &gitServer{pins: pins, gitPath: path, logger: logger, metrics: m}, nil
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
)

func (g *gitServer) serve(c echo.Context) error {
	r := c.Request()
	name, svc, rest, err := splitGitPath(r.URL.Path, r.URL.RawQuery)
	if err != nil {
		return err
	}
	if svc == receivePack {
		g.metrics.fetch(name, "refused")
		return errPush
	}
	if (svc == uploadPackAdvert) != (r.Method == http.MethodGet || r.Method == http.MethodHead) ||
		(svc == uploadPack) != (r.Method == http.MethodPost) {
		return echo.ErrMethodNotAllowed
	}
	p, err := refs.ParseProject(name)
	if err != nil {
		return err
	}
	repoPath, err := g.pins.RepoPath(p)
	if err != nil {
		return err
	}
	if err := bufferBody(r); err != nil {
		return err
	}
	// PATH_INFO is "/<repo dir name>/<rest>" below GIT_PROJECT_ROOT, the
	// repository's resolved parent: git http-backend serves nothing else.
	cgiReq := r.Clone(r.Context())
	cgiReq.URL.Path = "/" + filepath.Base(repoPath) + rest
	cgiReq.URL.RawPath = ""
	handler := &cgi.Handler{
		Path: g.gitPath,
		Args: []string{"http-backend"},
		Root: "/",
		Dir:  repoPath,
		Env: []string{
			"GIT_PROJECT_ROOT=" + filepath.Dir(repoPath),
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			// The Git-Protocol header reaches http-backend as
			// HTTP_GIT_PROTOCOL, which it turns into GIT_PROTOCOL (v2).
		},
		Stderr: &logWriter{logger: g.logger, project: name},
	}
	counter := &countingWriter{ResponseWriter: c.Response().Writer}
	handler.ServeHTTP(counter, cgiReq)
	outcome := "ok"
	if counter.status >= 400 {
		outcome = "error"
	}
	if svc == uploadPack {
		g.metrics.fetch(name, outcome)
	}
	g.metrics.gitBytes(name, counter.bytes)
	return nil
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

// countingWriter counts the bytes and keeps the status of a response.
type countingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *countingWriter) WriteHeader(code int) {
	w.status = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

// Flush lets git's streamed pack reach the client as it is written.
func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
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

package systest

import (
	"encoding/base64"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/refkeeper/refkeeper/testdata"
)

// The tokens of the web page's tests, besides testToken (admin).
const (
	uiReadToken     = "read-token-of-group-0123456789"
	uiPipelineToken = "pipeline-token-of-group-0123456789"
	uiOtherToken    = "read-token-of-other-0123456789"
)

// hostile is text a page must show as text: a mirror's upstream path and
// so its last_error carry it.
const hostile = `"><script>alert(1)</script><img/src=x/onerror=alert(2)>`

// uiFixture is a server with group/app (pins 1 to 4 in every state, by
// merge request and as a computed merge), other/lib, and a mirror whose
// clone failed, and an access file with scoped tokens.
type uiFixture struct {
	*server
	p *project
}

func startUIServer(t *testing.T) *uiFixture {
	t.Helper()
	p := newProject(t)
	other := testdata.NewBareRepo(t, p.root, "other/lib")
	other.Commit(t, "main", map[string]string{"lib.txt": "lib\n"}, "lib")
	path := writeAccess(t, `{"tokens": [
		{"name": "dashboard", "sha256": "`+sha256Hex(uiReadToken)+`", "role": "read", "projects": ["group/*"]},
		{"name": "orchestrator", "sha256": "`+sha256Hex(uiPipelineToken)+`", "role": "pipeline", "projects": ["group/*"]},
		{"name": "other-team", "sha256": "`+sha256Hex(uiOtherToken)+`", "role": "read", "projects": ["other/*"]}]}`)
	// A refused port: the mirror's clone fails at once.
	dead := "http://" + testdata.FreeAddr(t)
	s := startServer(t, "--repos", p.root, "--redis", testdata.StartRedis(t).URL(), "--access", path,
		"--upstream-allow", dead)
	f := &uiFixture{server: s, p: p}
	for _, c := range []struct{ method, path, body string }{
		{"PUT", apiBase + "/pipelines/1/ref", `{"merge_request_iid": 12}`},
		{"PUT", apiBase + "/pipelines/2/ref", `{"sha": "` + p.c1 + `"}`},
		{"PUT", apiBase + "/pipelines/3/ref", `{"merge": {"source": "` + p.c2 + `", "target": "` + p.c1 + `"}, "merge_request_iid": 12}`},
		{"POST", apiBase + "/pipelines/2/finish", ""},
		{"PUT", apiBase + "/pipelines/4/ref", `{"sha": "` + p.c2 + `"}`},
		{"DELETE", apiBase + "/pipelines/4/ref", ""},
		{"PUT", "/api/v1/projects/mirror%2Fbroken", `{"upstream": "` + dead + "/" + strings.ReplaceAll(hostile, `"`, `\"`) + `.git"}`},
	} {
		if code, out := s.call(t, c.method, c.path, c.body); code >= 300 {
			t.Fatalf("%s %s = %d %v", c.method, c.path, code, out)
		}
	}
	testdata.WaitFor(t, "the mirror's clone to fail", 30*time.Second, func() bool {
		_, out := s.call(t, "GET", "/api/v1/projects/mirror%2Fbroken", "")
		return out["state"] == "failed"
	})
	return f
}

// get sends GET with the headers given as "Name: value".
func (f *uiFixture) get(t *testing.T, path string, headers ...string) (int, http.Header, string) {
	t.Helper()
	return f.send(t, "GET", path, "", headers...)
}

func (f *uiFixture) send(t *testing.T, method, path, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, f.Base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ": ")
		req.Header.Set(k, v)
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(raw)
}

func bearer(token string) string { return "Authorization: Bearer " + token }

// TestUIRoles: every role sees its own projects and no other; a token of
// another project is refused that project's pins; no token, a wrong one,
// and the queue monitor for anyone but admin are refused.
func TestUIRoles(t *testing.T) {
	f := startUIServer(t)
	tests := []struct {
		name, token   string
		status        int
		sees, notSees []string
	}{
		{"admin", testToken, 200, []string{"group/app", "other/lib", "mirror/broken"}, nil},
		{"read of group/*", uiReadToken, 200, []string{"group/app"}, []string{"other/lib", "mirror/broken"}},
		{"pipeline of group/*", uiPipelineToken, 200, []string{"group/app"}, []string{"other/lib", "mirror/broken"}},
		{"read of other/*", uiOtherToken, 200, []string{"other/lib"}, []string{"group/app", "mirror/broken"}},
		{"wrong token", "not-a-token-0123456789", 401, []string{`name="token"`}, []string{"group/app", "other/lib"}},
	}
	for _, tt := range tests {
		code, _, body := f.get(t, "/ui/", bearer(tt.token))
		if code != tt.status {
			t.Errorf("%s: GET /ui/ = %d, want %d", tt.name, code, tt.status)
		}
		for _, s := range tt.sees {
			if !strings.Contains(body, s) {
				t.Errorf("%s: the page does not show %s", tt.name, s)
			}
		}
		for _, s := range tt.notSees {
			if strings.Contains(body, s) {
				t.Errorf("%s: the page shows %s", tt.name, s)
			}
		}
	}
	// No credentials: the login form, 401.
	if code, _, body := f.get(t, "/ui/"); code != 401 || !strings.Contains(body, `action="/ui/login"`) || strings.Contains(body, "group/app") {
		t.Errorf("GET /ui/ without a token = %d %q", code, body)
	}
	// Pins: the project's tokens see them; another project's is refused.
	for _, token := range []string{testToken, uiReadToken, uiPipelineToken} {
		if code, _, body := f.get(t, "/ui/?project=group%2Fapp", bearer(token)); code != 200 || !strings.Contains(body, f.p.c1) {
			t.Errorf("pins of group/app with %.12s… = %d", token, code)
		}
	}
	if code, _, body := f.get(t, "/ui/?project=group%2Fapp", bearer(uiOtherToken)); code != 403 || strings.Contains(body, f.p.c1) {
		t.Errorf("pins of group/app with other/*'s token = %d, shows its SHAs: %v", code, strings.Contains(body, f.p.c1))
	}
	if code, _, body := f.get(t, "/ui/?project=other%2Flib", bearer(uiReadToken)); code != 403 || strings.Contains(body, "other/lib</a>") {
		t.Errorf("other/lib with group/*'s token = %d", code)
	}
	// The queue monitor: admin only, read-only.
	for _, tt := range []struct {
		token  string
		status int
	}{{testToken, 200}, {uiReadToken, 403}, {uiPipelineToken, 403}, {uiOtherToken, 403}, {"", 401}} {
		var h []string
		if tt.token != "" {
			h = append(h, bearer(tt.token))
		}
		code, _, _ := f.get(t, "/ui/queues/", h...)
		if code != tt.status {
			t.Errorf("GET /ui/queues/ with %q = %d, want %d", tt.token, code, tt.status)
		}
		if code, _, _ := f.get(t, "/ui/queues/api/queues", h...); code != tt.status {
			t.Errorf("GET /ui/queues/api/queues with %q = %d, want %d", tt.token, code, tt.status)
		}
	}
}

// TestUIQueuesReadOnly: the monitor's routes that change queues and tasks
// are refused, also for admin, and change nothing.
func TestUIQueuesReadOnly(t *testing.T) {
	f := startUIServer(t)
	paused := func() string {
		_, _, body := f.get(t, "/ui/queues/api/queues/refkeeper", bearer(testToken))
		return body
	}
	before := paused()
	if !strings.Contains(before, `"paused":false`) {
		t.Fatalf("queue refkeeper as the monitor shows it: %s", before)
	}
	for _, r := range []struct{ method, path string }{
		{"POST", "/ui/queues/api/queues/refkeeper:pause"},
		{"DELETE", "/ui/queues/api/queues/refkeeper"},
		{"DELETE", "/ui/queues/api/queues/refkeeper/scheduled_tasks:delete_all"},
		{"POST", "/ui/queues/api/queues/refkeeper/scheduled_tasks:run_all"},
		{"PUT", "/ui/queues/api/queues/refkeeper"},
	} {
		code, hdr, body := f.send(t, r.method, r.path, "", bearer(testToken))
		if code != 405 || hdr.Get("Allow") != "GET, HEAD" || !strings.Contains(body, "read-only") {
			t.Errorf("%s %s = %d %q", r.method, r.path, code, body)
		}
	}
	if after := paused(); !strings.Contains(after, `"paused":false`) {
		t.Errorf("the queue changed: %s", after)
	}
	// The page: scripts by hash only, never framed, never cached.
	code, hdr, body := f.get(t, "/ui/queues/", bearer(testToken))
	csp := hdr.Get("Content-Security-Policy")
	if code != 200 || !strings.Contains(body, "Asynq") || !strings.Contains(csp, "style-src 'self' 'unsafe-inline';") ||
		strings.Contains(strings.SplitN(strings.SplitN(csp, "script-src", 2)[1], ";", 2)[0], "unsafe") || strings.Count(csp, "'sha256-") != 2 ||
		hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("GET /ui/queues/ = %d, CSP %q, Cache-Control %q", code, csp, hdr.Get("Cache-Control"))
	}
}

// TestUILoginForm: the form keeps the token in a __Host- cookie (Secure,
// HttpOnly, SameSite=Strict); a post from another site, without the CSRF
// cookie or with the token in the URL is refused; the cookie then opens
// the page, a stale one does not, and neither token nor cookie is logged.
func TestUILoginForm(t *testing.T) {
	f := startUIServer(t)
	code, hdr, body := f.get(t, "/ui/")
	csrf := cookieValue(hdr, "__Host-refkeeper-csrf")
	if code != 401 || csrf == "" || !strings.Contains(body, `name="csrf" value="`+csrf+`"`) {
		t.Fatalf("login form = %d, csrf cookie %q", code, csrf)
	}
	for _, want := range []string{"Secure", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(strings.Join(hdr.Values("Set-Cookie"), ";"), want) {
			t.Errorf("csrf cookie lacks %s: %q", want, hdr.Values("Set-Cookie"))
		}
	}
	form := func(token, csrfField string) string {
		return url.Values{"token": {token}, "csrf": {csrfField}}.Encode()
	}
	ct := "Content-Type: application/x-www-form-urlencoded"
	withCSRF := "Cookie: __Host-refkeeper-csrf=" + csrf
	refused := []struct {
		name, path, body string
		headers          []string
		status           int
	}{
		{"no csrf cookie (a cross-site post)", "/ui/login", form(uiReadToken, csrf), []string{ct}, 403},
		{"csrf field wrong", "/ui/login", form(uiReadToken, "x"+csrf[1:]), []string{ct, withCSRF}, 403},
		{"another origin", "/ui/login", form(uiReadToken, csrf), []string{ct, withCSRF, "Origin: https://evil.example"}, 403},
		{"cross-site fetch", "/ui/login", form(uiReadToken, csrf), []string{ct, withCSRF, "Sec-Fetch-Site: cross-site"}, 403},
		{"token in the URL", "/ui/login?token=" + uiReadToken, form("", csrf), []string{ct, withCSRF}, 400},
		{"wrong token", "/ui/login", form("not-a-token-0123456789", csrf), []string{ct, withCSRF}, 401},
		{"logout from another site", "/ui/logout", form("", csrf), []string{ct, withCSRF, "Origin: https://evil.example"}, 403},
	}
	for _, r := range refused {
		code, hdr, body := f.send(t, "POST", r.path, r.body, r.headers...)
		if code != r.status || cookieValue(hdr, "__Host-refkeeper-token") != "" || strings.Contains(body, uiReadToken) {
			t.Errorf("%s: %d (want %d), token cookie %q", r.name, code, r.status, cookieValue(hdr, "__Host-refkeeper-token"))
		}
	}
	if code, _, _ := f.get(t, "/ui/login?token="+uiReadToken); code != 404 {
		t.Errorf("GET /ui/login = %d, want 404", code)
	}
	// The login itself.
	code, hdr, _ = f.send(t, "POST", "/ui/login", form(uiReadToken, csrf), ct, withCSRF, "Origin: "+f.Base, "Sec-Fetch-Site: same-origin")
	cookie := cookieValue(hdr, "__Host-refkeeper-token")
	set := strings.Join(hdr.Values("Set-Cookie"), ";")
	if code != 303 || hdr.Get("Location") != "/ui/?from=login" || cookie == "" {
		t.Fatalf("login = %d, Location %q, cookie %q", code, hdr.Get("Location"), cookie)
	}
	for _, want := range []string{"Secure", "HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="} {
		if !strings.Contains(set, want) {
			t.Errorf("token cookie lacks %s: %q", want, set)
		}
	}
	withLogin := "Cookie: __Host-refkeeper-token=" + cookie + "; __Host-refkeeper-csrf=" + csrf
	code, _, body = f.get(t, "/ui/?from=login", withLogin)
	if code != 200 || !strings.Contains(body, "group/app") || strings.Contains(body, "other/lib") || !strings.Contains(body, "dashboard") ||
		!strings.Contains(body, `action="/ui/logout"`) {
		t.Errorf("the page with the login cookie = %d", code)
	}
	// A browser that did not keep the Secure cookie (plain http, not
	// localhost) is told why.
	if code, _, body := f.get(t, "/ui/?from=login"); code != 401 || !strings.Contains(body, "did not keep the login cookie") {
		t.Errorf("after a login the browser did not keep = %d", code)
	}
	// A cookie with a token that is no longer valid is dropped.
	stale := "Cookie: __Host-refkeeper-token=" + base64.RawURLEncoding.EncodeToString([]byte("revoked-token-0123456789"))
	if code, hdr, _ := f.get(t, "/ui/", stale); code != 401 || !strings.Contains(strings.Join(hdr.Values("Set-Cookie"), ";"), "__Host-refkeeper-token=; Path=/; Max-Age=0") {
		t.Errorf("a stale cookie = %d %q", code, hdr.Values("Set-Cookie"))
	}
	// Logout clears it.
	code, hdr, _ = f.send(t, "POST", "/ui/logout", form("", csrf), ct, withLogin)
	if code != 303 || !strings.Contains(strings.Join(hdr.Values("Set-Cookie"), ";"), "__Host-refkeeper-token=; Path=/; Max-Age=0") {
		t.Errorf("logout = %d %q", code, hdr.Values("Set-Cookie"))
	}
	f.Stop(t)
	for _, secret := range []string{uiReadToken, cookie, csrf} {
		if strings.Contains(f.Logs.String(), secret) {
			t.Errorf("the log holds a token or cookie: %s", grepLines(f.Logs.String(), secret))
		}
	}
}

// TestUIPageContent: filters are query parameters, hostile text from an
// upstream shows as text, and every answer is no-store with a policy that
// allows no script.
func TestUIPageContent(t *testing.T) {
	f := startUIServer(t)
	code, hdr, body := f.get(t, "/ui/", bearer(testToken))
	if code != 200 || strings.Contains(body, "<script") || strings.Contains(body, "<img") ||
		!strings.Contains(body, "&lt;script&gt;alert(1)&lt;/script&gt;") || !strings.Contains(body, `class="state-failed"`) {
		t.Errorf("the projects page = %d, does not escape the mirror's upstream and error:\n%s", code, body)
	}
	csp := hdr.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "frame-ancestors 'none'", "form-action 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "script-src") || hdr.Get("Cache-Control") != "no-store" || hdr.Get("X-Frame-Options") != "DENY" ||
		hdr.Get("Referrer-Policy") != "same-origin" {
		t.Errorf("headers: %v", hdr)
	}
	rows := func(path string) string {
		t.Helper()
		code, _, body := f.get(t, path, bearer(testToken))
		if code != 200 {
			t.Fatalf("GET %s = %d", path, code)
		}
		i := strings.Index(body, `<table id="pins">`)
		if i < 0 {
			t.Fatalf("GET %s: no pins table", path)
		}
		var ids []string
		for _, tr := range strings.Split(body[i:], "<tr>")[2:] {
			id, _, _ := strings.Cut(strings.TrimPrefix(strings.TrimSpace(tr), `<td class="num">`), "<")
			ids = append(ids, id)
		}
		return strings.Join(ids, ",")
	}
	for path, want := range map[string]string{
		"/ui/?project=group%2Fapp":                        "4,3,2,1",
		"/ui/?project=group%2Fapp&state=pinned":           "3,1",
		"/ui/?project=group%2Fapp&state=finished":         "2",
		"/ui/?project=group%2Fapp&state=deleted":          "4",
		"/ui/?project=group%2Fapp&mr=12":                  "3,1",
		"/ui/?project=group%2Fapp&state=pinned&mr=12&q=g": "3,1",
	} {
		if got := rows(path); got != want {
			t.Errorf("GET %s: pipelines %s, want %s", path, got, want)
		}
	}
	_, _, body = f.get(t, "/ui/?project=group%2Fapp&mr=12", bearer(testToken))
	if !strings.Contains(body, fmt.Sprintf("merge of <code>%s</code> into <code>%s</code>", f.p.c2, f.p.c1)) || !strings.Contains(body, "!12") {
		t.Errorf("pipeline 3's merge inputs or merge request are not shown")
	}
	if _, _, body := f.get(t, "/ui/?q=other", bearer(testToken)); !strings.Contains(body, "other/lib") || strings.Contains(body, ">group/app<") {
		t.Errorf("?q=other does not filter the projects")
	}
	for _, path := range []string{"/ui/?project=..%2Fetc", "/ui/?state=gone", "/ui/?project=group%2Fapp&mr=0x1", "/ui/?project=group%2Fapp&cursor=nonsense"} {
		if code, _, body := f.get(t, path, bearer(testToken)); code != 400 || strings.Contains(body, "<script") {
			t.Errorf("GET %s = %d, want 400", path, code)
		}
	}
	if code, _, _ := f.get(t, "/ui/?project=no%2Fsuch", bearer(testToken)); code != 404 {
		t.Errorf("GET /ui/?project=no/such = %d, want 404", code)
	}
}

// cookieValue is the value a Set-Cookie of hdr gives name ("" if none).
func cookieValue(hdr http.Header, name string) string {
	for _, c := range (&http.Response{Header: hdr}).Cookies() {
		if c.Name == name && c.MaxAge >= 0 {
			return c.Value
		}
	}
	return ""
}

// TestUIFailedMirror: the link of a mirror whose clone failed, as the
// projects page gives it, opens that mirror's page: its state and last
// error, and an empty pins table (a mirror not in place has no pins).
func TestUIFailedMirror(t *testing.T) {
	f := startUIServer(t)
	_, _, body := f.get(t, "/ui/", bearer(testToken))
	link := regexp.MustCompile(`<a href="([^"]+)">mirror/broken</a>`).FindStringSubmatch(body)
	if link == nil {
		t.Fatalf("the projects page has no link to mirror/broken:\n%s", body)
	}
	code, _, body := f.get(t, html.UnescapeString(link[1]), bearer(testToken))
	if code != 200 {
		t.Fatalf("GET %s (the failed mirror's link) = %d:\n%s", link[1], code, body)
	}
	i := strings.Index(body, `<h2 id="pins-of">`)
	if i < 0 {
		t.Fatalf("GET %s: no section of the mirror:\n%s", link[1], body)
	}
	section := body[i:]
	for _, want := range []string{`id="project-state"`, `class="state-failed">failed<`, "&lt;script&gt;alert(1)&lt;/script&gt;", `<table id="pins">`, "No pin"} {
		if !strings.Contains(section, want) {
			t.Errorf("the failed mirror's section lacks %s:\n%s", want, section)
		}
	}
	if strings.Contains(section, "<script") {
		t.Errorf("the failed mirror's last error is not escaped:\n%s", section)
	}
}

// TestUICSRFCookieShape: a CSRF cookie that is not of the shape the server
// makes (32 random bytes, base64url: 43 characters) is refused with 400,
// even when the form's field repeats it, and a page never echoes one into
// its forms but sets a fresh one.
func TestUICSRFCookieShape(t *testing.T) {
	f := &uiFixture{server: startServer(t, "--repos", newProject(t).root, "--redis", testdata.StartRedis(t).URL())}
	ct := "Content-Type: application/x-www-form-urlencoded"
	odd := []struct{ name, value string }{
		{"huge", strings.Repeat("a", 6000)},
		{"one short", strings.Repeat("a", 42)},
		{"one long", strings.Repeat("a", 44)},
		{"43 characters, not base64url", strings.Repeat("!", 43)},
		{"43 characters of standard base64", strings.Repeat("+/", 21) + "A"},
	}
	for _, c := range odd {
		form := url.Values{"token": {testToken}, "csrf": {c.value}}.Encode()
		code, hdr, body := f.send(t, "POST", "/ui/login", form, ct, "Cookie: __Host-refkeeper-csrf="+c.value)
		if code != 400 || cookieValue(hdr, "__Host-refkeeper-token") != "" || strings.Contains(body, c.value) {
			t.Errorf("login with a %s csrf cookie: %d (want 400), token cookie %q", c.name, code, cookieValue(hdr, "__Host-refkeeper-token"))
		}
		code, hdr, body = f.get(t, "/ui/", "Cookie: __Host-refkeeper-csrf="+c.value)
		fresh := cookieValue(hdr, "__Host-refkeeper-csrf")
		if code != 401 || strings.Contains(body, `value="`+c.value+`"`) || len(fresh) != 43 {
			t.Errorf("the login form with a %s csrf cookie: %d, fresh cookie %q", c.name, code, fresh)
		}
	}
}

// TestUIStaticNoListing: the page's static files are served, a directory
// of them is not listed (also where a path is redirected to it first).
func TestUIStaticNoListing(t *testing.T) {
	const listing = `<a href="style.css">` // a directory listing's entry (the page's own link is to /ui/static/style.css)
	f := &uiFixture{server: startServer(t, "--repos", newProject(t).root, "--redis", testdata.StartRedis(t).URL())}
	if code, _, body := f.get(t, "/ui/static/"); code != 404 || strings.Contains(body, listing) {
		t.Errorf("GET /ui/static/ = %d, lists the files: %v", code, strings.Contains(body, listing))
	}
	for _, path := range []string{"/ui/static", "/ui/static//", "/ui/static/./"} {
		resp, err := http.Get(f.Base + path) // following redirects
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 404 || strings.Contains(string(body), listing) {
			t.Errorf("GET %s (redirects followed) = %d, lists the files: %v", path, resp.StatusCode, strings.Contains(string(body), listing))
		}
	}
	code, hdr, body := f.get(t, "/ui/static/style.css")
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "text/css") || body == "" {
		t.Errorf("GET /ui/static/style.css = %d %q", code, hdr.Get("Content-Type"))
	}
}

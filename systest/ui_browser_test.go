package systest

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
)

// debianChromium is the browser binary of Debian's chromium package.
const debianChromium = "/usr/lib/chromium/chromium"

// TestUIInBrowser drives headless Chromium (Debian's chromium, which
// scripts/install-deps.sh installs) through the page as a person would:
// log in with the form, see the token's projects only, log out, log in as
// admin, open a project, filter its pins, and open the queue monitor,
// whose scripts must run under its Content-Security-Policy. Screenshots
// are kept in the test's artifact directory (go test -artifacts; the
// log names it).
func TestUIInBrowser(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("no chromium on PATH (scripts/install-deps.sh installs it): %v", err)
	}
	// Debian's chromium is a shell script that starts this binary; the
	// binary itself speaks to chromedp over its pipe.
	if _, err := os.Stat(debianChromium); err == nil {
		chromium = debianChromium
	}
	f := startUIServer(t)
	alloc, cancel := chromedp.NewExecAllocator(t.Context(), append(slices.Clone(chromedp.DefaultExecAllocatorOptions[:]),
		chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1280, 900),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))...)
	defer cancel()
	browser, cancel := chromedp.NewContext(alloc)
	defer cancel()
	ctx, cancel := context.WithTimeout(browser, 3*time.Minute)
	defer cancel()
	// The first run starts the browser, which lives as long as the
	// context of that run: ctx, not a step's shorter one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	artifacts := t.ArtifactDir()
	shot := func(name string) chromedp.Action[chromedp.Void] {
		return chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			png, err := chromedp.FullScreenshot(100)(ctx, tg)
			if err != nil {
				return err
			}
			path := filepath.Join(artifacts, name)
			t.Logf("screenshot: %s", path)
			return os.WriteFile(path, png, 0o644)
		})
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("reading %s: %v", sel, err)
		}
		return s
	}
	login := func(token string) {
		t.Helper()
		step, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(step,
			chromedp.Navigate(f.Base+"/ui/"),
			chromedp.WaitVisible(chromedp.CSS("#token")),
			chromedp.SendKeys(chromedp.CSS("#token"), token),
			chromedp.Click(chromedp.CSS("#login")),
			chromedp.WaitVisible(chromedp.CSS("#projects")),
		); err != nil {
			where, _ := chromedp.Run(ctx, chromedp.Location())
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
			t.Fatalf("logging in: %v; at %s:\n%s", err, where, page)
		}
	}

	// A read token of group/*: its projects, nothing else.
	login(uiReadToken)
	if projects := text("#projects"); !strings.Contains(projects, "group/app") || strings.Contains(projects, "other/lib") || strings.Contains(projects, "mirror/broken") {
		t.Errorf("a read token of group/* sees:\n%s", projects)
	}
	jsCookies, err := chromedp.Run(ctx, chromedp.Evaluate[string](`document.cookie`))
	if err != nil || strings.Contains(jsCookies, "refkeeper-token") {
		t.Errorf("the page's scripts can read the login cookie: %q %v", jsCookies, err)
	}
	got, err := chromedp.Call(ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{f.Base + "/ui/"}})
	if err != nil {
		t.Fatal(err)
	}
	kept := false
	for _, c := range got.Cookies {
		if c.Name == "__Host-refkeeper-token" {
			kept = true
			if !c.HTTPOnly || !c.Secure || c.SameSite != network.CookieSameSiteStrict || c.Path != "/" {
				t.Errorf("the login cookie is %+v", c)
			}
		}
	}
	if !kept {
		t.Fatalf("the browser did not keep the login cookie over http://127.0.0.1: %+v", got.Cookies)
	}
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.Search(`//button[text()="Log out"]`)),
		chromedp.WaitVisible(chromedp.CSS("#token")),
		chromedp.Navigate(f.Base+"/ui/"),
		chromedp.WaitVisible(chromedp.CSS("#token")),
	); err != nil {
		t.Fatalf("logging out: %v", err)
	}
	if body := text("body"); strings.Contains(body, "group/app") {
		t.Errorf("after logging out the page still shows the projects")
	}

	// Admin: open group/app, then filter its pins; each view is a link.
	login(testToken)
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.Search(`//a[text()="group/app"]`)),
		chromedp.WaitVisible(chromedp.CSS("#pins")),
		shot("ui-page.png"),
	); err != nil {
		t.Fatalf("opening group/app as admin: %v", err)
	}
	all := text("#pins")
	for _, want := range []string{"pinned", "finished", "deleted", f.p.c1, "!12", "merge of"} {
		if !strings.Contains(all, want) {
			t.Errorf("group/app's pins do not show %q:\n%s", want, all)
		}
	}
	// The filter's submit navigates: the pins are read once the browser
	// is at the filtered address (a query sent while the old page goes
	// away may wait on a node that is gone).
	filter, cancelFilter := context.WithTimeout(ctx, time.Minute)
	defer cancelFilter()
	if err := chromedp.Do(filter,
		chromedp.SetValue(chromedp.CSS("#state"), "pinned"),
		chromedp.SendKeys(chromedp.CSS("#mr"), "12"),
		chromedp.Click(chromedp.CSS("#filter-pins")),
	); err != nil {
		t.Fatalf("filtering pins: %v", err)
	}
	for {
		where, err := chromedp.Run(filter, chromedp.Location())
		if err == nil && strings.Contains(where, "state=pinned") {
			break
		}
		if filter.Err() != nil {
			page, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.documentElement.outerHTML`))
			t.Fatalf("filtering pins: still at %s (%v):\n%s", where, err, page)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := chromedp.Do(filter, chromedp.WaitVisible(chromedp.CSS("#pins")), shot("ui-page-filtered.png")); err != nil {
		t.Fatalf("reading the filtered pins: %v", err)
	}
	location, err := chromedp.Run(ctx, chromedp.Location())
	if err != nil || !strings.Contains(location, "project=group%2Fapp") || !strings.Contains(location, "state=pinned") || !strings.Contains(location, "mr=12") {
		t.Errorf("the filtered view's URL is %s (%v)", location, err)
	}
	filtered := text("#pins")
	if strings.Contains(filtered, "finished") || strings.Contains(filtered, "deleted") || strings.Count(filtered, "pinned") != 2 {
		t.Errorf("filtered by state=pinned and mr=12:\n%s", filtered)
	}
	// Bookmarked: the same URL opened afresh shows the same rows (their
	// pipeline, state, SHA, merge request and merge inputs; ages move on).
	rows := func() string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](`Array.from(document.querySelectorAll("#pins tr")).map(
			r => [0, 1, 2, 5, 6].map(i => r.cells[i] ? r.cells[i].innerText : "").join(" | ")).join("\n")`))
		if err != nil {
			t.Fatalf("reading the pins' rows: %v", err)
		}
		return s
	}
	before := rows()
	if err := chromedp.Do(ctx, chromedp.Navigate(location), chromedp.WaitVisible(chromedp.CSS("#pins"))); err != nil {
		t.Fatal(err)
	}
	if again := rows(); again != before || strings.Count(again, "pinned") != 2 {
		t.Errorf("the filtered view opened from its URL:\n%s\nwant the rows\n%s", again, before)
	}

	// The queue monitor's own page runs under its policy and shows the
	// service's queue.
	if err := chromedp.Do(ctx, chromedp.Navigate(f.Base+"/ui/queues/"),
		chromedp.Func(func(ctx context.Context, tg *chromedp.Target) error {
			_, err := chromedp.Poll[bool](`document.body.innerText.includes("refkeeper")`, chromedp.WithPollingTimeout(time.Minute))(ctx, tg)
			return err
		}),
		shot("ui-queues.png"),
	); err != nil {
		t.Errorf("the queue monitor did not render the refkeeper queue: %v", err)
	}
}

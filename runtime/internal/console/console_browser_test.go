package console

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// browserStepTimeout bounds each step in the browser, so a hung browser
// fails the test instead of stalling the suite.
const browserStepTimeout = 30 * time.Second

// chromiumPath finds the browser the test drives: STATEFUN_CHROMIUM, or
// Debian's chromium, which .ci/ensure-chromium installs for make test.
func chromiumPath(t *testing.T) string {
	t.Helper()
	path := os.Getenv("STATEFUN_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	if info, err := os.Stat(path); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
		return path
	}
	msg := fmt.Sprintf("no browser at %s: run .ci/ensure-chromium (Debian's chromium) or set STATEFUN_CHROMIUM", path)
	if os.Getenv("STATEFUN_REQUIRE_BROWSER") != "" || os.Getenv("CI") != "" {
		t.Fatal(msg + "; this run requires the browser tests (STATEFUN_REQUIRE_BROWSER or CI is set)")
	}
	t.Skip(msg)
	return ""
}

// browser is one headless chromium tab, with the page's console errors
// collected so a test can require there were none.
type browser struct {
	t   *testing.T
	ctx context.Context

	mu     sync.Mutex
	errors []string
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.NoSandbox, // the tests run as root, where chromium's sandbox refuses to start
		chromedp.Flag("disable-gpu", true),
		chromedp.WindowSize(1280, 900),
	)
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(allocCtx)
	t.Cleanup(func() {
		cancel()
		cancelAlloc()
	})
	// The first run starts the browser and lives as long as it, so it takes
	// no timeout of its own; the watchdog bounds it instead.
	watchdog := time.AfterFunc(browserStepTimeout, cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	watchdog.Stop()
	b := &browser{t: t, ctx: ctx}
	messages := chromedp.Console(ctx)
	go func() {
		for m, err := range messages {
			if err != nil {
				return
			}
			// The test server has no favicon; anything else the page
			// logs as an error (a script error, a blocked stylesheet or
			// script) is the console's fault.
			if (m.Type == chromedp.ConsoleError || m.IsException()) && !strings.Contains(m.URL, "favicon.ico") {
				b.mu.Lock()
				b.errors = append(b.errors, m.String()+" ("+m.URL+")")
				b.mu.Unlock()
			}
		}
	}()
	return b
}

// do runs the actions under the step timeout.
func (b *browser) do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// value runs one action that returns a value under the step timeout.
func value[T any](b *browser, what string, action chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// waitFor evaluates a JavaScript condition until it holds. It polls from
// Go rather than in the page, because the page it starts on may be
// navigating away: an evaluation that fails then is tried again.
func (b *browser) waitFor(what, condition string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, browserStepTimeout)
	defer cancel()
	var lastErr error
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("Boolean("+condition+")"))
		if err == nil && ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			b.t.Fatalf("waiting for %s: %s did not hold within %s (last error: %v)", what, condition, browserStepTimeout, lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(value(b, "reading "+sel, chromedp.TextContent(chromedp.CSS(sel))))
}

func (b *browser) count(sel string) int {
	b.t.Helper()
	return value(b, "counting "+sel, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
}

func (b *browser) noConsoleErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		b.t.Errorf("the page logged an error: %s", e)
	}
}

func disableScript(ctx context.Context, t *chromedp.Target) error {
	_, err := cdp.Call(ctx, t, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
	return err
}

func TestBrowserLookUpAnEntityWalkItsVersionsAndWatchConsumersCatchUp(t *testing.T) {
	src := newFakeSource()
	srv := httptest.NewServer(mounted(src, Options{}))
	defer srv.Close()
	b := newBrowser(t)

	b.do("opening the overview", chromedp.Navigate(srv.URL+"/console/"), chromedp.WaitVisible(chromedp.ID("types")))
	if n := b.count("#types tbody tr"); n != 3 {
		t.Fatalf("the overview lists %d entity types, want 3", n)
	}
	// The embedded stylesheet loaded, under the page's
	// Content-Security-Policy.
	if display := value(b, "reading the header's style", chromedp.Evaluate[string](
		`getComputedStyle(document.querySelector("header.top")).display`)); display != "flex" {
		t.Errorf("the header's display is %q: the stylesheet did not apply", display)
	}

	b.do("looking up cart-1",
		chromedp.SendKeys(chromedp.CSS(`form.lookup[data-type="shop.Cart"] input[name="key"]`), "cart-1"),
		chromedp.Click(chromedp.CSS(`form.lookup[data-type="shop.Cart"] button`)),
		chromedp.WaitVisible(chromedp.ID("state")))
	if loc := value(b, "reading the location", chromedp.Location()); loc != srv.URL+"/console/entities/shop.Cart/cart-1" {
		t.Errorf("the lookup landed on %s", loc)
	}
	if v := b.text("#version"); !strings.HasPrefix(v, "version 120 of 120") {
		t.Errorf("#version = %q, want version 120 of 120", v)
	}
	if n := b.count("#history tbody tr"); n != historyPageSize {
		t.Errorf("%d history rows, want a page of %d", n, historyPageSize)
	}

	b.do("opening version 75 from its history row",
		chromedp.Click(chromedp.CSS(`#history tr[data-seq="75"] td.seq a`)))
	b.waitFor("version 75 to show", `document.querySelector("#version")?.textContent.startsWith("version 75 of 120")`)
	state := b.text("#state")
	if !strings.Contains(state, `"sku-75"`) || strings.Contains(state, `"sku-76"`) {
		t.Errorf("the state at version 75 is not as of event 75:\n%s", state)
	}
	b.do("going to the previous version", chromedp.Click(chromedp.ID("prev")))
	b.waitFor("version 74 to show", `document.querySelector("#version")?.textContent.startsWith("version 74 of 120")`)
	b.do("diffing with the previous version", chromedp.Click(chromedp.ID("diff-prev")))
	b.waitFor("the diff to show", `document.querySelector("#diff .add") !== null`)
	if added := b.text("#diff .add"); !strings.Contains(added, "},") {
		t.Errorf("the first added line of the diff 73→74 is %q", added)
	}

	// Events arrive while the page is open; the latest link shows them.
	src.appendEvents("shop.Cart", "cart-1", 3)
	b.do("going to the latest version", chromedp.Click(chromedp.ID("latest")))
	b.waitFor("version 123 to show", `document.querySelector("#version")?.textContent.startsWith("version 123 of 123")`)
	if n := b.count(`#history tr[data-seq="123"]`); n != 1 {
		t.Errorf("the history lacks the appended event 123")
	}

	// A composite key: one input per key field, values with a slash, a
	// space and a non-ASCII letter.
	b.do("looking up a stock entity by its composite key",
		chromedp.Navigate(srv.URL+"/console/"),
		chromedp.SendKeys(chromedp.CSS(`form.lookup[data-type="shop.Stock"] label:nth-of-type(1) input`), "berlin/north"),
		chromedp.SendKeys(chromedp.CSS(`form.lookup[data-type="shop.Stock"] label:nth-of-type(2) input`), "sku 7 ü"),
		chromedp.Click(chromedp.CSS(`form.lookup[data-type="shop.Stock"] button`)),
		chromedp.WaitVisible(chromedp.ID("entity-id")))
	if id := b.text("#entity-id"); id != joinKey("berlin/north", "sku 7 ü") {
		t.Errorf("the composite lookup shows entity %q", id)
	}

	b.do("opening the consumers", chromedp.Click(chromedp.ID("nav-consumers")), chromedp.WaitVisible(chromedp.ID("consumers")))
	lag := `document.querySelector('#consumers tr[data-name="cart-totals"] td.lag-events').textContent`
	if got := b.text(`#consumers tr[data-name="cart-totals"] td.lag-events`); got != "42" {
		t.Fatalf("cart-totals lags %q events, want 42", got)
	}
	// The page refreshes its table in place: a reload would drop this mark.
	b.do("marking the page", chromedp.Evaluate[chromedp.Void](`window.stillThisPage = true`))
	src.catchUp("cart-totals", 30)
	b.waitFor("the lag to fall to 12", lag+` === "12"`)
	src.catchUp("cart-totals", 12)
	b.waitFor("the lag to fall to 0", lag+` === "0"`)
	if row := b.text(`#consumers tr[data-name="cart-totals"]`); strings.Contains(row, "insert total") {
		t.Errorf("the caught-up consumer still shows its last error: %q", row)
	}
	if !value(b, "checking the page was not reloaded", chromedp.Evaluate[bool](`window.stillThisPage === true`)) {
		t.Error("the consumers page reloaded instead of refreshing its table")
	}
	b.noConsoleErrors()
}

func TestBrowserPagesWorkWithoutScript(t *testing.T) {
	src := newFakeSource()
	srv := httptest.NewServer(mounted(src, Options{}))
	defer srv.Close()
	b := newBrowser(t)

	b.do("opening the overview with script disabled",
		chromedp.Func(disableScript),
		chromedp.Navigate(srv.URL+"/console/"),
		chromedp.WaitVisible(chromedp.ID("types")))
	b.do("looking up cart-2 with the plain form",
		chromedp.SendKeys(chromedp.CSS(`form.lookup[data-type="shop.Cart"] input[name="key"]`), "cart-2"),
		chromedp.Click(chromedp.CSS(`form.lookup[data-type="shop.Cart"] button`)))
	b.waitFor("cart-2 to show", `document.querySelector("#entity-id")?.textContent === "cart-2"`)
	b.do("opening an older version from the history", chromedp.Click(chromedp.CSS(`#history tr[data-seq="2"] td.seq a`)))
	b.waitFor("version 2 to show", `document.querySelector("#version")?.textContent.startsWith("version 2 of 6")`)
	b.do("comparing with version 1 through the diff form",
		chromedp.SendKeys(chromedp.CSS(`#diff-form input[name="diff"]`), "1"),
		chromedp.Click(chromedp.CSS(`#diff-form button`)))
	b.waitFor("the diff to show", `document.querySelector("#diff") !== null && document.querySelector("#version").textContent.startsWith("version 2 of 6")`)

	b.do("opening the consumers", chromedp.Click(chromedp.ID("nav-consumers")), chromedp.WaitVisible(chromedp.ID("consumers")))
	if n := b.count("#consumers tbody tr"); n != 3 {
		t.Errorf("%d consumer rows without script, want 3", n)
	}
	b.noConsoleErrors()
}

// Package browsertest drives Debian's chromium, headless, from tests (the
// console's pages): .ci/ensure-chromium installs it for make test, which
// sets STATEFUN_REQUIRE_BROWSER so that a missing browser fails the run
// instead of skipping the tests.
package browsertest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/chromedp"
)

// StepTimeout bounds each step in the browser, so a hung browser
// fails the test instead of stalling the suite.
const StepTimeout = 30 * time.Second

// chromiumPath finds the browser the test drives: STATEFUN_CHROMIUM, or
// Debian's chromium, which .ci/ensure-chromium installs for make test.
func chromiumPath(t testing.TB) string {
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

// Browser is one headless chromium tab, with the page's console errors
// collected so a test can require there were none.
type Browser struct {
	t   testing.TB
	Ctx context.Context

	mu     sync.Mutex
	errors []string
}

// New starts a headless chromium (closed when the test ends), or skips
// the test when there is none and the run does not require one.
func New(t testing.TB) *Browser {
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
	watchdog := time.AfterFunc(StepTimeout, cancel)
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting %s: %v", path, err)
	}
	watchdog.Stop()
	b := &Browser{t: t, Ctx: ctx}
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

// Do runs the actions under the step timeout. An action that lost its
// element to a page that replaced its document meanwhile (the browser's
// "Could not find node with given id") is run again: the next try finds
// the element on the page as it is now.
func (b *Browser) Do(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, StepTimeout)
	defer cancel()
	for {
		err := chromedp.Do(ctx, actions...)
		if err == nil {
			return
		}
		if !strings.Contains(err.Error(), "Could not find node with given id") || ctx.Err() != nil {
			b.t.Fatalf("%s: %v", what, err)
		}
		select {
		case <-ctx.Done():
			b.t.Fatalf("%s: %v", what, err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Value runs one action that returns a value under the step timeout.
func Value[T any](b *Browser, what string, action chromedp.Action[T]) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, StepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	if err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
	return v
}

// WaitFor evaluates a JavaScript condition until it holds on a page that
// has finished loading (a click on a page still loading can find its
// element replaced under it). It polls from
// Go rather than in the page, because the page it starts on may be
// navigating away: an evaluation that fails then is tried again.
func (b *Browser) WaitFor(what, condition string) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, StepTimeout)
	defer cancel()
	var lastErr error
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.readyState === "complete" && Boolean(`+condition+")"))
		if err == nil && ok {
			return
		}
		if err != nil {
			lastErr = err
		}
		select {
		case <-ctx.Done():
			b.t.Fatalf("waiting for %s: %s did not hold within %s (last error: %v)", what, condition, StepTimeout, lastErr)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Text is the trimmed text of the element sel selects.
func (b *Browser) Text(sel string) string {
	b.t.Helper()
	return strings.TrimSpace(Value(b, "reading "+sel, chromedp.TextContent(chromedp.CSS(sel))))
}

// Count is how many elements sel selects.
func (b *Browser) Count(sel string) int {
	b.t.Helper()
	return Value(b, "counting "+sel, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
}

// NoConsoleErrors fails the test for each error the page logged.
func (b *Browser) NoConsoleErrors() {
	b.t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, e := range b.errors {
		b.t.Errorf("the page logged an error: %s", e)
	}
}

// DisableScript turns JavaScript off in the tab (chromedp.ActionFunc).
func DisableScript(ctx context.Context, t *chromedp.Target) error {
	_, err := cdp.Call(ctx, t, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true})
	return err
}

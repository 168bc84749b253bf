package console

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/statefun-go/statefun/internal/browsertest"
)

func TestBrowserLookUpAnEntityWalkItsVersionsAndWatchConsumersCatchUp(t *testing.T) {
	src := newFakeSource()
	srv := httptest.NewServer(mounted(src, Options{}))
	defer srv.Close()
	b := browsertest.New(t)

	b.Do("opening the overview", chromedp.Navigate(srv.URL+"/console/"), chromedp.WaitVisible(chromedp.ID("types")))
	if n := b.Count("#types tbody tr"); n != 3 {
		t.Fatalf("the overview lists %d entity types, want 3", n)
	}
	// The embedded stylesheet loaded, under the page's
	// Content-Security-Policy.
	if display := browsertest.Value(b, "reading the header's style", chromedp.Evaluate[string](
		`getComputedStyle(document.querySelector("header.top")).display`)); display != "flex" {
		t.Errorf("the header's display is %q: the stylesheet did not apply", display)
	}

	b.Do("looking up cart-1",
		chromedp.SendKeys(chromedp.CSS(`form.lookup[data-type="shop.Cart"] input[name="key"]`), "cart-1"),
		chromedp.Click(chromedp.CSS(`form.lookup[data-type="shop.Cart"] button`)),
		chromedp.WaitVisible(chromedp.ID("state")))
	if loc := browsertest.Value(b, "reading the location", chromedp.Location()); loc != srv.URL+"/console/entities/shop.Cart/cart-1" {
		t.Errorf("the lookup landed on %s", loc)
	}
	if v := b.Text("#version"); !strings.HasPrefix(v, "version 120 of 120") {
		t.Errorf("#version = %q, want version 120 of 120", v)
	}
	if n := b.Count("#history tbody tr"); n != historyPageSize {
		t.Errorf("%d history rows, want a page of %d", n, historyPageSize)
	}

	b.Do("opening version 75 from its history row",
		chromedp.Click(chromedp.CSS(`#history tr[data-seq="75"] td.seq a`)))
	b.WaitFor("version 75 to show", `document.querySelector("#version")?.textContent.startsWith("version 75 of 120")`)
	state := b.Text("#state")
	if !strings.Contains(state, `"sku-75"`) || strings.Contains(state, `"sku-76"`) {
		t.Errorf("the state at version 75 is not as of event 75:\n%s", state)
	}
	b.Do("going to the previous version", chromedp.Click(chromedp.ID("prev")))
	b.WaitFor("version 74 to show", `document.querySelector("#version")?.textContent.startsWith("version 74 of 120")`)
	b.Do("diffing with the previous version", chromedp.Click(chromedp.ID("diff-prev")))
	b.WaitFor("the diff to show", `document.querySelector("#diff .add") !== null`)
	if added := b.Text("#diff .add"); !strings.Contains(added, "},") {
		t.Errorf("the first added line of the diff 73→74 is %q", added)
	}

	// Events arrive while the page is open; the latest link shows them.
	src.appendEvents("shop.Cart", "cart-1", 3)
	b.Do("going to the latest version", chromedp.Click(chromedp.ID("latest")))
	b.WaitFor("version 123 to show", `document.querySelector("#version")?.textContent.startsWith("version 123 of 123")`)
	if n := b.Count(`#history tr[data-seq="123"]`); n != 1 {
		t.Errorf("the history lacks the appended event 123")
	}

	// A composite key: one input per key field, values with a slash, a
	// space and a non-ASCII letter.
	b.Do("looking up a stock entity by its composite key",
		chromedp.Navigate(srv.URL+"/console/"),
		chromedp.SendKeys(chromedp.CSS(`form.lookup[data-type="shop.Stock"] label:nth-of-type(1) input`), "berlin/north"),
		chromedp.SendKeys(chromedp.CSS(`form.lookup[data-type="shop.Stock"] label:nth-of-type(2) input`), "sku 7 ü"),
		chromedp.Click(chromedp.CSS(`form.lookup[data-type="shop.Stock"] button`)),
		chromedp.WaitVisible(chromedp.ID("entity-id")))
	if id := b.Text("#entity-id"); id != joinKey("berlin/north", "sku 7 ü") {
		t.Errorf("the composite lookup shows entity %q", id)
	}

	b.Do("opening the consumers", chromedp.Click(chromedp.ID("nav-consumers")), chromedp.WaitVisible(chromedp.ID("consumers")))
	lag := `document.querySelector('#consumers tr[data-name="cart-totals"] td.lag-events').textContent`
	if got := b.Text(`#consumers tr[data-name="cart-totals"] td.lag-events`); got != "42" {
		t.Fatalf("cart-totals lags %q events, want 42", got)
	}
	// The page refreshes its table in place: a reload would drop this mark.
	b.Do("marking the page", chromedp.Evaluate[chromedp.Void](`window.stillThisPage = true`))
	src.catchUp("cart-totals", 30)
	b.WaitFor("the lag to fall to 12", lag+` === "12"`)
	src.catchUp("cart-totals", 12)
	b.WaitFor("the lag to fall to 0", lag+` === "0"`)
	if row := b.Text(`#consumers tr[data-name="cart-totals"]`); strings.Contains(row, "insert total") {
		t.Errorf("the caught-up consumer still shows its last error: %q", row)
	}
	if !browsertest.Value(b, "checking the page was not reloaded", chromedp.Evaluate[bool](`window.stillThisPage === true`)) {
		t.Error("the consumers page reloaded instead of refreshing its table")
	}
	b.NoConsoleErrors()
}

func TestBrowserPagesWorkWithoutScript(t *testing.T) {
	src := newFakeSource()
	srv := httptest.NewServer(mounted(src, Options{}))
	defer srv.Close()
	b := browsertest.New(t)

	b.Do("opening the overview with script disabled",
		chromedp.Func(browsertest.DisableScript),
		chromedp.Navigate(srv.URL+"/console/"),
		chromedp.WaitVisible(chromedp.ID("types")))
	b.Do("looking up cart-2 with the plain form",
		chromedp.SendKeys(chromedp.CSS(`form.lookup[data-type="shop.Cart"] input[name="key"]`), "cart-2"),
		chromedp.Click(chromedp.CSS(`form.lookup[data-type="shop.Cart"] button`)))
	b.WaitFor("cart-2 to show", `document.querySelector("#entity-id")?.textContent === "cart-2"`)
	b.Do("opening an older version from the history", chromedp.Click(chromedp.CSS(`#history tr[data-seq="2"] td.seq a`)))
	b.WaitFor("version 2 to show", `document.querySelector("#version")?.textContent.startsWith("version 2 of 6")`)
	b.Do("comparing with version 1 through the diff form",
		chromedp.SendKeys(chromedp.CSS(`#diff-form input[name="diff"]`), "1"),
		chromedp.Click(chromedp.CSS(`#diff-form button`)))
	b.WaitFor("the diff to show", `document.querySelector("#diff") !== null && document.querySelector("#version").textContent.startsWith("version 2 of 6")`)

	b.Do("opening the consumers", chromedp.Click(chromedp.ID("nav-consumers")), chromedp.WaitVisible(chromedp.ID("consumers")))
	if n := b.Count("#consumers tbody tr"); n != 3 {
		t.Errorf("%d consumer rows without script, want 3", n)
	}
	b.NoConsoleErrors()
}

package statefun_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/statefun-go/statefun/internal/browsertest"
	"github.com/statefun-go/statefun/testdata/consumer"
	cart "github.com/statefun-go/statefun/testdata/eventsourced"
)

// TestConsoleInABrowser drives the server's console in headless chromium,
// as the issue that asked for it describes: open the shopping cart, add
// items through the API, see them in the history, pick an older version
// and see the older state, and see a consumer's lag fall to zero.
func TestConsoleInABrowser(t *testing.T) {
	b := browsertest.New(t)
	gate := &gatedAudit{shut: true}
	grpcAddr, httpAddr := freeAddr(t), freeAddr(t)
	startServer(t, nil, []string{"--listen", grpcAddr, "--http-listen", httpAddr, "--data-dir", ":memory:"},
		cart.NewShoppingCart(cartEntity{}), consumer.NewCartAudit(gate))
	base := "http://" + httpAddr
	for _, sku := range []string{"apple", "pear", "fig"} {
		if code, body := post(t, base, cartPath+"AddItem", `{"cart_id":"my cart","sku":"`+sku+`","quantity":1}`, "Content-Type", "application/json"); code != http.StatusOK {
			t.Fatalf("AddItem %s: %d %s", sku, code, body)
		}
	}

	b.Do("opening the console", chromedp.Navigate(base+"/console/"), chromedp.WaitVisible(chromedp.ID("types")))
	b.Do("looking up the cart",
		chromedp.SendKeys(chromedp.CSS(`form.lookup[data-type="shopping-cart"] input[name="key"]`), "my cart"),
		chromedp.Click(chromedp.CSS(`form.lookup[data-type="shopping-cart"] button`)),
		chromedp.WaitVisible(chromedp.ID("state")))
	if n := b.Count("#history tbody tr"); n != 3 {
		t.Fatalf("the history has %d rows, want the 3 items added", n)
	}
	if state := b.Text("#state"); !strings.Contains(state, "fig") {
		t.Errorf("the latest state lacks the last item:\n%s", state)
	}
	b.Do("opening version 1", chromedp.Click(chromedp.CSS(`#history tr[data-seq="1"] td.seq a`)))
	b.WaitFor("version 1 to show", `document.querySelector("#version")?.textContent.startsWith("version 1 of 3")`)
	if state := b.Text("#state"); !strings.Contains(state, "apple") || strings.Contains(state, "pear") {
		t.Errorf("the state at version 1 is not the cart after its first item:\n%s", state)
	}

	b.Do("opening the consumers", chromedp.Navigate(base+"/console/consumers"), chromedp.WaitVisible(chromedp.ID("consumers")))
	b.WaitFor("cart-audit to be behind, with its error", `document.querySelector('#consumers tr[data-name="cart-audit"] td.lag-events')?.textContent.trim() === "3" &&
		document.querySelector('#consumers tr[data-name="cart-audit"] td.error')?.textContent.includes("downstream is down")`)
	gate.open()
	// The page refreshes its table itself; no reload.
	b.WaitFor("cart-audit's lag to fall to zero", `document.querySelector('#consumers tr[data-name="cart-audit"] td.lag-events')?.textContent.trim() === "0"`)
	b.NoConsoleErrors()
}

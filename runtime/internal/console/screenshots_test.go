package console

import (
	"flag"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/statefun-go/statefun/internal/browsertest"
)

var screenshotDir = flag.String("screenshots", "", "write the console's screenshots (overview.png, entity.png, consumers.png) of the fake source into this directory; make screenshots sets it")

// TestScreenshots renders the main pages for the docs (docs/console); it
// runs only when asked with -screenshots.
func TestScreenshots(t *testing.T) {
	if *screenshotDir == "" {
		t.Skip("writes docs/console's screenshots only when asked: make screenshots")
	}
	if err := os.MkdirAll(*screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(mounted(newFakeSource(), Options{}))
	defer srv.Close()
	b := browsertest.New(t)
	b.Do("sizing the viewport", chromedp.EmulateViewport(1280, 800))
	for _, shot := range []struct{ file, path, ready string }{
		{"overview.png", "/console/", "types"},
		{"entity.png", "/console/entities/shop.Cart/cart-2?diff=4&seq=5", "diff"},
		{"consumers.png", "/console/consumers", "consumers"},
	} {
		b.Do("opening "+shot.path, chromedp.Navigate(srv.URL+shot.path), chromedp.WaitVisible(chromedp.ID(shot.ready)))
		png := browsertest.Value(b, "capturing "+shot.path, chromedp.FullScreenshot(100))
		if err := os.WriteFile(filepath.Join(*screenshotDir, shot.file), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b.NoConsoleErrors()
}

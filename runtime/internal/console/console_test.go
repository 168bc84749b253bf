package console

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
)

// mounted serves the console the way the server binary does: behind an
// http.ServeMux, whose path cleaning an entity's URL must survive.
func mounted(src Source, opts Options) http.Handler {
	h := Handler(src, opts)
	prefix := opts.Prefix
	if prefix == "" {
		prefix = "/console/"
	}
	mux := http.NewServeMux()
	mux.Handle(prefix, h)
	return mux
}

type page struct {
	status int
	header http.Header
	body   string
	root   *html.Node
}

func get(t *testing.T, h http.Handler, target string) page {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	p := page{status: rec.Code, header: rec.Header(), body: rec.Body.String()}
	if strings.HasPrefix(rec.Header().Get("Content-Type"), "text/html") {
		root, err := html.Parse(strings.NewReader(p.body))
		if err != nil {
			t.Fatalf("GET %s: the page does not parse as HTML: %v", target, err)
		}
		p.root = root
	}
	return p
}

// getOK fetches a page and fails the test unless it is a 200.
func getOK(t *testing.T, h http.Handler, target string) page {
	t.Helper()
	p := get(t, h, target)
	if p.status != http.StatusOK {
		t.Fatalf("GET %s: status %d, want 200; body:\n%s", target, p.status, p.body)
	}
	return p
}

func (p page) all(match func(*html.Node) bool) []*html.Node {
	var found []*html.Node
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode && match(n) {
			found = append(found, n)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	if p.root != nil {
		walk(p.root)
	}
	return found
}

func (p page) byID(id string) *html.Node {
	found := p.all(func(n *html.Node) bool { return attr(n, "id") == id })
	if len(found) == 0 {
		return nil
	}
	return found[0]
}

// text is the text of the element with the id; "" when there is none.
func (p page) text(id string) string {
	n := p.byID(id)
	if n == nil {
		return ""
	}
	return textOf(n)
}

// href is the link of the element with the id; "" when there is none.
func (p page) href(id string) string {
	n := p.byID(id)
	if n == nil {
		return ""
	}
	return attr(n, "href")
}

// bodyRows are the rows of a table's tbody.
func (p page) bodyRows(tableID string) []*html.Node {
	table := p.byID(tableID)
	if table == nil {
		return nil
	}
	return page{root: table}.all(func(n *html.Node) bool {
		return n.Data == "tr" && n.Parent != nil && n.Parent.Data == "tbody" && !hasClass(n, "empty")
	})
}

func attr(n *html.Node, name string) string {
	for _, a := range n.Attr {
		if a.Key == name {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	for c := range strings.FieldsSeq(attr(n, "class")) {
		if c == class {
			return true
		}
	}
	return false
}

func textOf(n *html.Node) string {
	var b strings.Builder
	var walk func(*html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(n)
	return b.String()
}

// cell is the text of a row's cell with the class.
func cell(row *html.Node, class string) string {
	cells := page{root: row}.all(func(n *html.Node) bool { return n.Data == "td" && hasClass(n, class) })
	if len(cells) == 0 {
		return ""
	}
	return strings.TrimSpace(textOf(cells[0]))
}

// historySeqs are the seqs of the history rows shown.
func (p page) historySeqs(t *testing.T) []int64 {
	t.Helper()
	var seqs []int64
	for _, row := range p.bodyRows("history") {
		seq, err := strconv.ParseInt(cell(row, "seq"), 10, 64)
		if err != nil {
			t.Fatalf("history row seq %q: %v", cell(row, "seq"), err)
		}
		seqs = append(seqs, seq)
	}
	return seqs
}

func seqRange(from, to int64) []int64 {
	var s []int64
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}

func equalSeqs(a, b []int64) bool {
	return fmt.Sprint(a) == fmt.Sprint(b)
}

func TestOverviewListsEntityTypesWithCountsAndALookupFormPerType(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	p := getOK(t, mounted(src, Options{}), "/console/")

	rows := p.bodyRows("types")
	if len(rows) != len(src.types) {
		t.Fatalf("%d type rows, want %d", len(rows), len(src.types))
	}
	for i, want := range src.types {
		row := rows[i]
		got := []string{cell(row, "type"), cell(row, "kind"), cell(row, "service"), cell(row, "cached"), cell(row, "loads"), cell(row, "hits"), cell(row, "evictions")}
		wantCells := []string{want.Type, want.Kind, want.Service, fmt.Sprint(want.Cached), fmt.Sprint(want.Loads), fmt.Sprint(want.Hits), fmt.Sprint(want.Evictions)}
		if fmt.Sprint(got) != fmt.Sprint(wantCells) {
			t.Errorf("row %d = %q, want %q", i, got, wantCells)
		}
	}

	forms := p.all(func(n *html.Node) bool { return n.Data == "form" && hasClass(n, "lookup") })
	if len(forms) != len(src.types) {
		t.Fatalf("%d lookup forms, want one per type (%d)", len(forms), len(src.types))
	}
	for i, form := range forms {
		if attr(form, "method") != "get" || attr(form, "action") != "/console/lookup" {
			t.Errorf("form %d: method %q action %q, want a GET to /console/lookup", i, attr(form, "method"), attr(form, "action"))
		}
		keys := page{root: form}.all(func(n *html.Node) bool { return n.Data == "input" && attr(n, "name") == "key" })
		if len(keys) != len(src.types[i].KeyFields) {
			t.Errorf("form for %s has %d key inputs, want one per key field (%d)", src.types[i].Type, len(keys), len(src.types[i].KeyFields))
		}
	}
	if p.href("consumers-link") != "/console/consumers" {
		t.Errorf("consumers link = %q", p.href("consumers-link"))
	}
}

func TestLookupRedirectsToTheEntityOfTheKeyValues(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	h := mounted(src, Options{})
	// A composite key whose values hold a slash, a space and a non-ASCII
	// letter: the form's values, in order, make the ID.
	q := url.Values{"type": {"shop.Stock"}, "key": {"berlin/north", "sku 7 ü"}}
	p := get(t, h, "/console/lookup?"+q.Encode())
	if p.status != http.StatusSeeOther {
		t.Fatalf("lookup: status %d, want 303; body:\n%s", p.status, p.body)
	}
	entity := getOK(t, h, p.header.Get("Location"))
	if got, want := entity.text("entity-id"), joinKey("berlin/north", "sku 7 ü"); got != want {
		t.Errorf("the lookup landed on entity %q, want %q", got, want)
	}

	bad := get(t, h, "/console/lookup?type=shop.Stock&key=only-one")
	if bad.status != http.StatusBadRequest || !strings.Contains(bad.text("message"), "2 key fields") {
		t.Errorf("a lookup with too few key values: status %d, message %q; want 400 with the source's reason", bad.status, bad.text("message"))
	}
}

func TestEntityPageShowsTheLatestStateAndTheNewestHistoryPage(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	h := mounted(src, Options{})
	p := getOK(t, h, "/console/entities/shop.Cart/cart-1")

	want, _ := src.Entity(t.Context(), "shop.Cart", "cart-1", 0)
	if got := p.text("state"); got != want.StateJSON {
		t.Errorf("#state =\n%s\nwant\n%s", got, want.StateJSON)
	}
	if got := p.text("version"); !strings.HasPrefix(got, "version 120 of 120") {
		t.Errorf("#version = %q, want version 120 of 120", got)
	}
	if !strings.Contains(p.text("snapshot"), "100") {
		t.Errorf("#snapshot = %q, want the snapshot seq 100", p.text("snapshot"))
	}
	if seqs := p.historySeqs(t); !equalSeqs(seqs, seqRange(71, 120)) {
		t.Errorf("history seqs %v, want the newest page 71..120", seqs)
	}
	if p.byID("next") != nil || p.byID("latest") != nil || p.byID("newer") != nil {
		t.Error("the latest version links to a next or latest version, or to newer events")
	}
	if p.href("prev") != "/console/entities/shop.Cart/cart-1?seq=119" {
		t.Errorf("#prev = %q", p.href("prev"))
	}

	// A history row shows the event and links to the state as of it.
	row := p.bodyRows("history")[0]
	if cell(row, "event-type") != "shop.v1.ItemAdded" || cell(row, "stored") != "2026-03-14 09:28:39.500 UTC" ||
		!strings.Contains(cell(row, "payload"), `"sku": "sku-71"`) {
		t.Errorf("history row 71 = type %q stored %q payload %q", cell(row, "event-type"), cell(row, "stored"), cell(row, "payload"))
	}
	link := page{root: row}.all(func(n *html.Node) bool { return n.Data == "a" })
	if len(link) != 1 || attr(link[0], "href") != "/console/entities/shop.Cart/cart-1?seq=71" {
		t.Errorf("row 71 links to %v, want its version", link)
	}
	current := p.all(func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "current") })
	if len(current) != 1 || cell(current[0], "seq") != "120" {
		t.Errorf("%d rows marked current, want only 120's", len(current))
	}
}

func TestEntityVersionLinksMoveBetweenVersions(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	h := mounted(src, Options{})
	p := getOK(t, h, "/console/entities/shop.Cart/cart-1?seq=5")
	if got := p.text("version"); !strings.HasPrefix(got, "version 5 of 120") {
		t.Fatalf("#version = %q, want version 5 of 120", got)
	}
	want, _ := src.Entity(t.Context(), "shop.Cart", "cart-1", 5)
	if p.text("state") != want.StateJSON {
		t.Errorf("#state at seq 5 =\n%s\nwant\n%s", p.text("state"), want.StateJSON)
	}
	if p.byID("snapshot") != nil {
		t.Error("version 5 says it was replayed from a snapshot; it was replayed from the first event")
	}
	for id, wantVersion := range map[string]string{"prev": "version 4 of 120", "next": "version 6 of 120", "latest": "version 120 of 120"} {
		next := getOK(t, h, p.href(id))
		if got := next.text("version"); !strings.HasPrefix(got, wantVersion) {
			t.Errorf("#%s (%s) leads to %q, want %q", id, p.href(id), got, wantVersion)
		}
	}
	first := getOK(t, h, "/console/entities/shop.Cart/cart-1?seq=1")
	if first.byID("prev") != nil || first.byID("diff-prev") != nil {
		t.Error("version 1 links to a previous version")
	}
}

func TestEntityHistoryPagesOlderAndNewer(t *testing.T) {
	t.Parallel()
	h := mounted(newFakeSource(), Options{})
	p := getOK(t, h, "/console/entities/shop.Cart/cart-1")
	steps := []struct {
		link string
		want []int64
	}{
		{"older", seqRange(21, 70)},
		{"older", seqRange(1, 50)},
		{"newer", seqRange(51, 100)},
		{"newer", seqRange(101, 120)},
	}
	for _, step := range steps {
		target := p.href(step.link)
		if target == "" {
			t.Fatalf("no #%s link on the page of %v", step.link, p.historySeqs(t))
		}
		p = getOK(t, h, target)
		if got := p.historySeqs(t); !equalSeqs(got, step.want) {
			t.Fatalf("#%s (%s) shows seqs %v, want %v", step.link, target, got, step.want)
		}
	}
	if p.byID("newer") != nil {
		t.Error("the newest page links to newer events")
	}
	oldest := getOK(t, h, "/console/entities/shop.Cart/cart-1?after=0")
	if oldest.byID("older") != nil {
		t.Error("the oldest page links to older events")
	}
	// Moving between versions keeps the history page that was asked for.
	atOld := getOK(t, h, "/console/entities/shop.Cart/cart-1?after=0&seq=10")
	if next := getOK(t, h, atOld.href("next")); !equalSeqs(next.historySeqs(t), seqRange(1, 50)) {
		t.Errorf("#next from page after=0 shows seqs %v, want 1..50 still", next.historySeqs(t))
	}
}

func TestEntityDiffShowsTheLinesThatChanged(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	h := mounted(src, Options{})
	p := getOK(t, h, "/console/entities/shop.Cart/cart-2?seq=3")
	if p.href("diff-prev") != "/console/entities/shop.Cart/cart-2?diff=2&seq=3" {
		t.Fatalf("#diff-prev = %q", p.href("diff-prev"))
	}
	d := getOK(t, h, p.href("diff-prev"))
	spans := page{root: d.byID("diff")}.all(func(n *html.Node) bool { return n.Data == "span" })
	var added, removed []string
	for _, s := range spans {
		switch {
		case hasClass(s, "add"):
			added = append(added, strings.Join(strings.Fields(textOf(s)), " "))
		case hasClass(s, "del"):
			removed = append(removed, strings.Join(strings.Fields(textOf(s)), " "))
		}
	}
	wantAdded := []string{"+ },", "+ {", `+ "sku": "sku-3",`, `+ "quantity": 1`}
	// The second item's closing brace gains a comma: the longest common
	// subsequence keeps "}" as the third item's, so nothing is removed.
	if fmt.Sprintf("%q", added) != fmt.Sprintf("%q", wantAdded) || len(removed) != 0 {
		t.Errorf("diff 2→3 added %q removed %q; want added %q and nothing removed", added, removed, wantAdded)
	}
	var context []string
	for _, s := range spans {
		if !hasClass(s, "add") && !hasClass(s, "del") {
			context = append(context, strings.Join(strings.Fields(textOf(s)), " "))
		}
	}
	wantContext := []string{"… 7 unchanged lines", "{", `"sku": "sku-2",`, `"quantity": 3`, "}", "]", "}"}
	if fmt.Sprintf("%q", context) != fmt.Sprintf("%q", wantContext) {
		t.Errorf("the diff's unchanged lines %q, want %q", context, wantContext)
	}

	// The diff form lands on the same entity and version.
	form := d.byID("diff-form")
	fields := url.Values{"diff": {"1"}}
	for _, in := range (page{root: form}).all(func(n *html.Node) bool { return n.Data == "input" && attr(n, "type") == "hidden" }) {
		fields.Add(attr(in, "name"), attr(in, "value"))
	}
	viaForm := getOK(t, h, attr(form, "action")+"?"+fields.Encode())
	if !strings.HasPrefix(viaForm.text("version"), "version 3 of 6") || viaForm.byID("diff") == nil {
		t.Errorf("the diff form led to %q without a diff", viaForm.text("version"))
	}
}

func TestDiffLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, older, newer string
		want               string
	}{
		{"equal", "a\nb", "a\nb", " a  b"},
		{"added at end", "a", "a\nb", " a +b"},
		{"removed in middle", "a\nb\nc", "a\nc", " a -b  c"},
		{"changed", "a\nb\nc", "a\nx\nc", " a -b +x  c"},
		{"from empty", "", "a\nb", "+a +b"},
		{"to empty", "a", "", "-a"},
		{"moved", "a\nb\nc\nd", "b\nc\na\nd", "-a  b  c +a  d"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := renderDiff(diffLines(tt.older, tt.newer)); got != tt.want {
				t.Errorf("diffLines(%q, %q) = %q, want %q", tt.older, tt.newer, got, tt.want)
			}
		})
	}
}

func TestDiffOfTextsTooLargeToAlignRemovesAndAddsTheMiddle(t *testing.T) {
	t.Parallel()
	var older, newer []string
	for i := range 1100 {
		older = append(older, fmt.Sprintf("o%d", i))
		newer = append(newer, fmt.Sprintf("n%d", i))
	}
	older = append([]string{"head"}, append(older, "tail")...)
	newer = append([]string{"head"}, append(newer, "tail")...)
	lines := diffLines(strings.Join(older, "\n"), strings.Join(newer, "\n"))
	if len(lines) != 2+2*1100 || lines[0] != (diffLine{"same", "head"}) || lines[1].Op != "del" ||
		lines[1100].Op != "del" || lines[1101].Op != "add" || lines[len(lines)-1] != (diffLine{"same", "tail"}) {
		t.Errorf("diff of %d×%d changed lines: %d lines, want head, 1100 removed, 1100 added, tail", 1100, 1100, len(lines))
	}
}

func TestDiffContextLeavesOutUnchangedLinesFarFromChanges(t *testing.T) {
	t.Parallel()
	var older []string
	for i := range 20 {
		older = append(older, strconv.Itoa(i))
	}
	newer := slices.Clone(older)
	newer[10] = "ten"
	got := renderDiff(withContext(diffLines(strings.Join(older, "\n"), strings.Join(newer, "\n"))))
	want := "skip7 unchanged lines  7  8  9 -10 +ten  11  12  13 skip6 unchanged lines"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	// One unchanged line is shown rather than replaced by a marker.
	got = renderDiff(withContext(diffLines("a\nb\nc\nd\ne", "x\nb\nc\nd\ne\nf\ng\nh\ny")))
	if want := "-a +x  b  c  d  e +f +g +h +y"; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func renderDiff(lines []diffLine) string {
	marks := map[string]string{"same": " ", "add": "+", "del": "-", "skip": "skip"}
	var parts []string
	for _, l := range lines {
		parts = append(parts, marks[l.Op]+l.Text)
	}
	return strings.Join(parts, " ")
}

// hostileIDs are IDs that break a URL or a page when put in unescaped.
var hostileIDs = []string{
	hostileText + " a/b ü",
	"a/b",
	"a//b",
	"/leading",
	"trailing/",
	".",
	"..",
	"../../console/consumers",
	"a/./b",
	"with space",
	"ü-ñ-日本",
	"100%",
	"100%2F",
	"?query#fragment",
	"a%2Fb",
	joinKey("berlin/north", "sku 7 ü"),
}

func TestEntityURLsCarryAnyIDThroughTheServeMux(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	for _, id := range hostileIDs {
		if _, ok := src.entities["shop.Cart\x00"+id]; !ok {
			src.addEntity("shop.Cart", id, 2, false)
		}
	}
	h := mounted(src, Options{})
	c := &handler{prefix: "/console/"}
	for _, id := range hostileIDs {
		for _, seq := range []string{"", "1"} {
			q := url.Values{}
			if seq != "" {
				q.Set("seq", seq)
			}
			target := c.entityURL("shop.Cart", id, q)
			p := get(t, h, target)
			if p.status != http.StatusOK {
				t.Errorf("ID %q at %s: status %d, want 200", id, target, p.status)
				continue
			}
			if got := p.text("entity-id"); got != id {
				t.Errorf("ID %q at %s shows entity %q", id, target, got)
			}
			// Every link of the page keeps to the same entity.
			for _, linkID := range []string{"prev", "next", "latest"} {
				if href := p.href(linkID); href != "" {
					if got := getOK(t, h, href).text("entity-id"); got != id {
						t.Errorf("ID %q: #%s (%s) shows entity %q", id, linkID, href, got)
					}
				}
			}
		}
	}
}

func TestHostileIDsAndStatesAreEscaped(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	h := mounted(src, Options{})
	id := hostileText + " a/b ü"
	c := &handler{prefix: "/console/"}
	pages := []string{
		c.entityURL("shop.Cart", id, nil),
		c.entityURL("shop.Cart", id, url.Values{"seq": {"2"}, "diff": {"1"}}),
		"/console/consumers",
	}
	for _, target := range pages {
		p := getOK(t, h, target)
		if strings.Contains(p.body, "<script>alert") || strings.Contains(p.body, "<img") {
			t.Errorf("%s carries the hostile markup unescaped", target)
		}
		if !strings.Contains(p.body, "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;") {
			t.Errorf("%s does not show the hostile text escaped", target)
		}
	}
	p := getOK(t, h, pages[0])
	if got := p.text("entity-id"); got != id {
		t.Errorf("#entity-id = %q, want %q", got, id)
	}
	if !strings.Contains(p.text("state"), `<img src=x onerror=alert(1)>`) {
		t.Errorf("#state does not show the state's text as text: %q", p.text("state"))
	}
}

// TestPagesRunNoInlineScriptOrStyle holds the pages to the
// Content-Security-Policy they are sent with: a script or style inside the
// page would be blocked by the browser.
func TestPagesRunNoInlineScriptOrStyle(t *testing.T) {
	t.Parallel()
	h := mounted(newFakeSource(), Options{})
	for _, target := range []string{
		"/console/", "/console/consumers", "/console/entities/shop.Cart/cart-2?seq=2&diff=1", "/console/entities/shop.Cart/missing",
	} {
		p := get(t, h, target)
		if got := p.header.Get("Content-Security-Policy"); got != "default-src 'self'" {
			t.Errorf("%s: Content-Security-Policy %q", target, got)
		}
		for _, n := range p.all(func(*html.Node) bool { return true }) {
			if n.Data == "script" && (attr(n, "src") == "" || n.FirstChild != nil) {
				t.Errorf("%s has an inline script", target)
			}
			if n.Data == "style" {
				t.Errorf("%s has a style element", target)
			}
			for _, a := range n.Attr {
				if a.Key == "style" || strings.HasPrefix(a.Key, "on") {
					t.Errorf("%s: <%s %s=%q>", target, n.Data, a.Key, a.Val)
				}
			}
		}
	}
}

func TestStaticAssetsAreServedFromTheBinary(t *testing.T) {
	t.Parallel()
	h := mounted(newFakeSource(), Options{})
	p := getOK(t, h, "/console/")
	var assets []string
	for _, n := range p.all(func(n *html.Node) bool { return n.Data == "link" || n.Data == "script" }) {
		assets = append(assets, attr(n, "href")+attr(n, "src"))
	}
	if fmt.Sprint(assets) != "[/console/static/console.css /console/static/console.js]" {
		t.Fatalf("the page loads %v, want the embedded stylesheet and script", assets)
	}
	for asset, contentType := range map[string]string{assets[0]: "text/css", assets[1]: "text/javascript"} {
		a := get(t, h, asset)
		if a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), contentType) || len(a.body) < 100 {
			t.Errorf("%s: status %d, type %q, %d bytes", asset, a.status, a.header.Get("Content-Type"), len(a.body))
		}
	}
}

func TestConsumersPageShowsProgressLagRetriesAndErrors(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	p := getOK(t, mounted(src, Options{}), "/console/consumers")
	rows := p.bodyRows("consumers")
	if len(rows) != len(src.consumers) {
		t.Fatalf("%d consumer rows, want %d", len(rows), len(src.consumers))
	}
	want := [][]string{
		{"cart-totals", "shop.Cart", "cart-1@118", "42", "3.5s", "1", "handler cart-totals: insert total: " + hostileText},
		{"runtime/outbox", "shop.Cart", "global@20931", "0", "—", "0", ""},
		{"stock-publisher", "shop.Stock", "kafka:stock/3@771", "7", "2m0s", "0", ""},
	}
	for i, row := range rows {
		got := []string{cell(row, "name"), cell(row, "entity-type"), cell(row, "position"), cell(row, "lag-events"), cell(row, "lag-time"), cell(row, "retrying"), cell(row, "error")}
		if fmt.Sprintf("%q", got) != fmt.Sprintf("%q", want[i]) {
			t.Errorf("row %d = %q, want %q", i, got, want[i])
		}
	}
	if attr(p.byID("consumers"), "data-refresh") == "" {
		t.Error("the consumers table does not ask the script to refresh it")
	}
}

func TestEntityPageListsPendingTimersAndOverviewTheViews(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	due := time.Date(2026, 3, 14, 10, 0, 0, 0, time.UTC)
	src.mu.Lock()
	src.timers = map[string][]Timer{"shop.Cart\x00cart-1": {{Name: "expire", Due: due, Method: "/shop.v1.Cart/Expire", Attempts: 2}}}
	src.views = []View{{Name: "carts_by_sku", Version: 2, Serving: 1, Updated: 40}}
	src.mu.Unlock()
	h := mounted(src, Options{})
	p := getOK(t, h, "/console/entities/shop.Cart/cart-1")
	rows := p.bodyRows("timers")
	if len(rows) != 1 || cell(rows[0], "name") != "expire" || cell(rows[0], "method") != "/shop.v1.Cart/Expire" || cell(rows[0], "attempts") != "2" || cell(rows[0], "due") != "2026-03-14 10:00:00.000 UTC" {
		t.Fatalf("timer rows: %d", len(rows))
	}
	if p := getOK(t, h, "/console/entities/shop.Cart/cart-2"); p.byID("timers") != nil {
		t.Error("an entity without timers shows a timers table")
	}
	rows = getOK(t, h, "/console/").bodyRows("views")
	if len(rows) != 1 || cell(rows[0], "name") != "carts_by_sku" || cell(rows[0], "ready") != "being built" || cell(rows[0], "serving") != "1" || cell(rows[0], "updated") != "40" {
		t.Fatalf("view rows: %d", len(rows))
	}
}

func TestClusterPageShowsNodesAndTheirShards(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	p := getOK(t, mounted(src, Options{}), "/console/cluster")
	if p.byID("single") == nil {
		t.Error("a single node's cluster page does not say it is one")
	}
	src.mu.Lock()
	src.cluster = Cluster{Clustered: true, Shards: 8, Free: 1, Nodes: []Node{
		{ID: "10.0.0.1:8080", Address: "10.0.0.1:8080", Shards: 4, Self: true, LastHeartbeat: 300 * time.Millisecond},
		{ID: "10.0.0.2:8080", Address: "10.0.0.2:8080", Shards: 3, LastHeartbeat: 1200 * time.Millisecond},
	}}
	src.mu.Unlock()
	p = getOK(t, mounted(src, Options{}), "/console/cluster")
	rows := p.bodyRows("nodes")
	if len(rows) != 2 || cell(rows[0], "shards") != "4" || cell(rows[1], "shards") != "3" || !strings.Contains(cell(rows[0], "name"), "(this node)") {
		t.Fatalf("node rows %d: %q %q", len(rows), cell(rows[0], "name"), cell(rows[0], "shards"))
	}
	if got := strings.TrimSpace(textOf(p.byID("shards"))); got != "8 shards, 1 without a live lease." {
		t.Errorf("#shards = %q", got)
	}
}

func TestMissingEntitiesAndPagesAre404(t *testing.T) {
	t.Parallel()
	h := mounted(newFakeSource(), Options{})
	for target, message := range map[string]string{
		"/console/entities/shop.Cart/nobody":    `no shop.Cart entity with ID "nobody" has any history`,
		"/console/entities/shop.Nothing/cart-1": `no shop.Nothing entity with ID "cart-1"`,
		"/console/nowhere":                      "nothing is served at /console/nowhere",
	} {
		p := get(t, h, target)
		if p.status != http.StatusNotFound || !strings.Contains(p.text("message"), message) {
			t.Errorf("%s: status %d, message %q; want 404 saying %q", target, p.status, p.text("message"), message)
		}
	}
}

func TestSourceErrorsAre500WithTheMessage(t *testing.T) {
	t.Parallel()
	src := newFakeSource()
	src.failWith(errFakeStore)
	h := mounted(src, Options{})
	for _, target := range []string{"/console/", "/console/consumers", "/console/entities/shop.Cart/cart-1"} {
		p := get(t, h, target)
		if p.status != http.StatusInternalServerError || p.text("message") != errFakeStore.Error() {
			t.Errorf("%s: status %d, message %q; want 500 with the source's error", target, p.status, p.text("message"))
		}
	}
	// A version past the latest is the source's to refuse.
	past := get(t, mounted(newFakeSource(), Options{}), "/console/entities/shop.Cart/cart-2?seq=9")
	if past.status != http.StatusInternalServerError || !strings.Contains(past.text("message"), "no version 9") {
		t.Errorf("seq past the latest: status %d, message %q", past.status, past.text("message"))
	}
}

func TestBadVersionParametersAre400(t *testing.T) {
	t.Parallel()
	h := mounted(newFakeSource(), Options{})
	for _, q := range []string{"seq=abc", "seq=-1", "after=x", "diff=1.5"} {
		p := get(t, h, "/console/entities/shop.Cart/cart-1?"+q)
		if p.status != http.StatusBadRequest || !strings.Contains(p.text("message"), "not a version number") {
			t.Errorf("?%s: status %d, message %q; want 400", q, p.status, p.text("message"))
		}
	}
}

func TestTheConsoleOnlyReads(t *testing.T) {
	t.Parallel()
	h := mounted(newFakeSource(), Options{})
	for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(method, "/console/entities/shop.Cart/cart-1", nil))
		if rec.Code != http.StatusMethodNotAllowed || rec.Header().Get("Allow") != "GET, HEAD" {
			t.Errorf("%s: status %d, Allow %q; want 405", method, rec.Code, rec.Header().Get("Allow"))
		}
	}
}

func TestPrefixAndTitleOptions(t *testing.T) {
	t.Parallel()
	h := mounted(newFakeSource(), Options{Prefix: "/ops/console/", Title: "shop <prod>"})
	p := getOK(t, h, "/ops/console/")
	if got := attr(p.all(func(n *html.Node) bool { return n.Data == "form" })[0], "action"); got != "/ops/console/lookup" {
		t.Errorf("lookup form action %q, want it under the prefix", got)
	}
	if !strings.Contains(p.body, "shop &lt;prod&gt;") {
		t.Error("the title is not shown, escaped")
	}
	q := url.Values{"type": {"shop.Cart"}, "key": {"cart-1"}}
	if loc := get(t, h, "/ops/console/lookup?"+q.Encode()).header.Get("Location"); loc != "/ops/console/entities/shop.Cart/cart-1" {
		t.Errorf("lookup redirects to %q, want the entity under the prefix", loc)
	}
	if r := get(t, h, "/ops/console"); r.status != http.StatusMovedPermanently && r.status != http.StatusTemporaryRedirect {
		t.Errorf("/ops/console: status %d, want a redirect to the prefix", r.status)
	}
}

// Package console serves the server binary's read-only web console: the
// hosted entity types and their cache counters, one entity's state at any
// version with its event history, and the consumers' progress.
//
// Every page is a plain server-rendered URL that can be linked and works
// without JavaScript; the one script only refreshes the consumers table in
// place. Templates, styles and the script are embedded, so the binary needs
// nothing from outside. The console reads through a Source and never writes.
package console

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Options configure the console.
type Options struct {
	// Prefix is the URL path the console is mounted under, with a leading
	// and a trailing slash; "/console/" when empty. The handler sees the
	// full path: mount it with mux.Handle(prefix, h), not http.StripPrefix.
	Prefix string
	// Title heads every page; "statefun" when empty.
	Title string
}

// historyPageSize is how many events one page of an entity's history shows.
const historyPageSize = 50

// contentSecurityPolicy allows the console's own stylesheet and script and
// nothing else: no inline script, so an ID or a payload that slipped past
// escaping still could not run.
const contentSecurityPolicy = "default-src 'self'"

//go:embed templates/*.html
var templateFiles embed.FS

//go:embed static
var staticFiles embed.FS

// Handler returns the console, serving GET and HEAD under opts.Prefix.
func Handler(src Source, opts Options) http.Handler {
	prefix := opts.Prefix
	if prefix == "" {
		prefix = "/console/"
	}
	if !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	if !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	title := opts.Title
	if title == "" {
		title = "statefun"
	}
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err) // the embed directive guarantees the directory
	}
	return &handler{
		src:    src,
		prefix: prefix,
		title:  title,
		pages:  parsePages(),
		static: http.StripPrefix(prefix+"static/", http.FileServerFS(static)),
	}
}

type handler struct {
	src    Source
	prefix string
	title  string
	pages  map[string]*template.Template
	static http.Handler
}

// parsePages parses each page together with the layout, one template set
// per page, so that the pages' blocks do not overwrite each other.
func parsePages() map[string]*template.Template {
	pages := map[string]*template.Template{}
	for _, name := range []string{"overview", "entity", "consumers", "cluster", "error"} {
		pages[name] = template.Must(template.New("layout.html").Funcs(templateFuncs).
			ParseFS(templateFiles, "templates/layout.html", "templates/"+name+".html"))
	}
	return pages
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Security-Policy", contentSecurityPolicy)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		h.renderError(w, http.StatusMethodNotAllowed, "Read-only",
			"the console only reads; "+r.Method+" is not served")
		return
	}
	// The escaped path keeps an ID's "%2F" apart from the path's own
	// slashes.
	p := r.URL.EscapedPath()
	if p+"/" == h.prefix {
		http.Redirect(w, r, h.prefix, http.StatusMovedPermanently)
		return
	}
	rest, ok := strings.CutPrefix(p, h.prefix)
	switch {
	case !ok:
		h.notFound(w, "nothing is served at "+r.URL.Path)
	case rest == "":
		h.overview(w, r)
	case rest == "consumers":
		h.consumers(w, r)
	case rest == "cluster":
		h.cluster(w, r)
	case rest == "lookup":
		h.lookup(w, r)
	case strings.HasPrefix(rest, "static/"):
		h.static.ServeHTTP(w, r)
	case strings.HasPrefix(rest, "entities/"):
		h.entity(w, r, strings.TrimPrefix(rest, "entities/"))
	default:
		h.notFound(w, "nothing is served at "+r.URL.Path)
	}
}

// entityURL is the page of one entity. The ID is path-escaped as one
// segment, its slashes too, so neither the browser nor http.ServeMux
// resolves or cleans anything inside it. Only the IDs "", "." and ".." would
// still be taken for path segments; those go into the query instead, and
// the page reads the ID from there when the path has none.
func (h *handler) entityURL(typ, id string, query url.Values) string {
	u := h.prefix + "entities/" + url.PathEscape(typ) + "/"
	q := url.Values{}
	for k, v := range query {
		q[k] = v
	}
	switch id {
	case "", ".", "..":
		q.Set("id", id)
	default:
		u += url.PathEscape(id)
	}
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	return u
}

// parseEntityPath splits "{type}/{id}" (escaped) into the type and the ID;
// the ID comes from the query when the path has none (see entityURL).
func parseEntityPath(escaped string, query url.Values) (typ, id string, err error) {
	typEsc, idEsc, _ := strings.Cut(escaped, "/")
	if typ, err = url.PathUnescape(typEsc); err != nil {
		return "", "", fmt.Errorf("the entity type in the URL is badly escaped: %w", err)
	}
	if id, err = url.PathUnescape(idEsc); err != nil {
		return "", "", fmt.Errorf("the entity ID in the URL is badly escaped: %w", err)
	}
	if id == "" {
		id = query.Get("id")
	}
	if typ == "" || id == "" {
		return "", "", errors.New("the URL names no entity: use " + "entities/{type}/{id}")
	}
	return typ, id, nil
}

// queryInt reads an optional non-negative integer parameter.
func queryInt(query url.Values, name string) (n int64, present bool, err error) {
	s := query.Get(name)
	if s == "" {
		return 0, false, nil
	}
	n, err = strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, true, fmt.Errorf("parameter %s=%q is not a version number; give a whole number, 0 or more", name, s)
	}
	return n, true, nil
}

// basePage is what the layout needs on every page.
type basePage struct {
	Title   string
	Prefix  string
	Heading string
}

func (h *handler) base(heading string) basePage {
	return basePage{Title: h.title, Prefix: h.prefix, Heading: heading}
}

// render executes a page into a buffer first, so that a template error
// becomes a whole error page and not half a page.
func (h *handler) render(w http.ResponseWriter, status int, page string, data any) {
	var buf bytes.Buffer
	if err := h.pages[page].Execute(&buf, data); err != nil {
		if page == "error" {
			http.Error(w, "the console could not render its error page: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h.renderError(w, http.StatusInternalServerError, "Console error", "rendering the page failed: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

type errorPage struct {
	basePage
	Status  int
	Message string
}

func (h *handler) renderError(w http.ResponseWriter, status int, heading, message string) {
	h.render(w, status, "error", errorPage{basePage: h.base(heading), Status: status, Message: message})
}

func (h *handler) notFound(w http.ResponseWriter, message string) {
	h.renderError(w, http.StatusNotFound, "Not found", message)
}

func (h *handler) sourceError(w http.ResponseWriter, what string, err error) {
	h.renderError(w, http.StatusInternalServerError, "Could not read "+what, err.Error())
}

package console

import (
	"errors"
	"fmt"
	"html/template"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

var templateFuncs = template.FuncMap{
	"storedAt": formatStoredAt,
	"lag":      formatLag,
}

type overviewPage struct {
	basePage
	Types []EntityType
	Views []View
}

func (h *handler) overview(w http.ResponseWriter, r *http.Request) {
	types, err := h.src.EntityTypes(r.Context())
	if err != nil {
		h.sourceError(w, "the entity types", err)
		return
	}
	views, err := h.src.Views(r.Context())
	if err != nil {
		h.sourceError(w, "the views", err)
		return
	}
	h.render(w, http.StatusOK, "overview", overviewPage{basePage: h.base("Entity types"), Types: types, Views: views})
}

// lookup turns the overview's form (a type and its key fields' values) into
// the entity's URL, so the form works as a plain GET without script.
func (h *handler) lookup(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	typ := q.Get("type")
	id, err := h.src.EntityID(typ, q["key"])
	if err != nil {
		h.renderError(w, http.StatusBadRequest, "Cannot look that up", err.Error())
		return
	}
	http.Redirect(w, r, h.entityURL(typ, id, nil), http.StatusSeeOther)
}

type entityPage struct {
	basePage
	Entity Entity
	// PrevURL, NextURL and LatestURL move between versions; "" where there
	// is none to move to.
	PrevURL, NextURL, LatestURL string
	// DiffPrevURL shows this version's change from the one before.
	DiffPrevURL string
	DiffForm    getForm
	Diff        *diffView
	History     []historyRow
	// OlderURL and NewerURL page the history; "" at either end.
	OlderURL, NewerURL string
	// Timers are the entity's pending timers.
	Timers []Timer
}

// getForm is a GET form that lands on a given URL: a GET form drops its
// action's query, so that query travels as hidden fields.
type getForm struct {
	Action string
	Hidden []hiddenField
}

type hiddenField struct{ Name, Value string }

func newGetForm(target string, extra url.Values) getForm {
	action, rawQuery, _ := strings.Cut(target, "?")
	q, _ := url.ParseQuery(rawQuery) // built by entityURL, so it parses
	for k, v := range extra {
		q[k] = v
	}
	f := getForm{Action: action}
	for _, k := range slices.Sorted(maps.Keys(q)) {
		for _, v := range q[k] {
			f.Hidden = append(f.Hidden, hiddenField{Name: k, Value: v})
		}
	}
	return f
}

type diffView struct {
	From, To int64
	Lines    []diffLine
}

type historyRow struct {
	Event
	URL     string // the state as of this event
	Current bool   // the version shown above
}

// entityQuery is an entity page's query: the version shown (0: latest),
// the history page (the events after a seq) and the version to diff with.
type entityQuery struct {
	seq, after, diff  int64
	hasAfter, hasDiff bool
}

func parseEntityQuery(q url.Values) (entityQuery, error) {
	var eq entityQuery
	var err error
	if eq.seq, _, err = queryInt(q, "seq"); err != nil {
		return eq, err
	}
	if eq.after, eq.hasAfter, err = queryInt(q, "after"); err != nil {
		return eq, err
	}
	eq.diff, eq.hasDiff, err = queryInt(q, "diff")
	return eq, err
}

func (h *handler) entity(w http.ResponseWriter, r *http.Request, escaped string) {
	q := r.URL.Query()
	typ, id, err := parseEntityPath(escaped, q)
	if err != nil {
		h.renderError(w, http.StatusBadRequest, "Bad entity URL", err.Error())
		return
	}
	eq, err := parseEntityQuery(q)
	if err != nil {
		h.renderError(w, http.StatusBadRequest, "Bad entity URL", err.Error())
		return
	}
	ctx := r.Context()
	e, err := h.src.Entity(ctx, typ, id, eq.seq)
	if errors.Is(err, ErrNotFound) {
		h.notFound(w, fmt.Sprintf("no %s entity with ID %q has any history", typ, id))
		return
	}
	if err != nil {
		h.sourceError(w, "the entity", err)
		return
	}
	// The history page defaults to the newest events; an explicit page is
	// carried along by the version links, so moving between versions keeps
	// the rows in view.
	keep := url.Values{}
	after := eq.after
	if eq.hasAfter {
		keep.Set("after", strconv.FormatInt(after, 10))
	} else {
		after = max(0, e.Latest-historyPageSize)
	}
	at := func(seq int64, extra ...string) string {
		q := url.Values{}
		for k, v := range keep {
			q[k] = v
		}
		q.Set("seq", strconv.FormatInt(seq, 10))
		for i := 0; i+1 < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		return h.entityURL(typ, id, q)
	}
	page := entityPage{
		basePage: h.base(typ + " " + id),
		Entity:   e,
	}
	page.DiffForm = newGetForm(h.entityURL(typ, id, keep), url.Values{"seq": {strconv.FormatInt(e.Seq, 10)}})
	if e.Seq > 1 {
		page.PrevURL = at(e.Seq - 1)
		page.DiffPrevURL = at(e.Seq, "diff", strconv.FormatInt(e.Seq-1, 10))
	}
	if e.Seq < e.Latest {
		page.NextURL = at(e.Seq + 1)
		page.LatestURL = h.entityURL(typ, id, keep)
	}
	if eq.hasDiff {
		from, err := h.src.Entity(ctx, typ, id, eq.diff)
		if err != nil {
			h.sourceError(w, fmt.Sprintf("the entity at version %d to compare with", eq.diff), err)
			return
		}
		page.Diff = &diffView{From: from.Seq, To: e.Seq, Lines: withContext(diffLines(from.StateJSON, e.StateJSON))}
	}
	events, err := h.src.Events(ctx, typ, id, after, historyPageSize)
	if err != nil {
		h.sourceError(w, "the entity's history", err)
		return
	}
	for _, ev := range events {
		page.History = append(page.History, historyRow{Event: ev, URL: at(ev.Seq), Current: ev.Seq == e.Seq})
	}
	// Paging assumes an entity's seqs run 1, 2, 3…, as its events'
	// sequence numbers do; a page is the events after a seq.
	pageAt := func(after int64) string {
		q := url.Values{}
		if eq.seq != 0 {
			q.Set("seq", strconv.FormatInt(eq.seq, 10))
		}
		q.Set("after", strconv.FormatInt(after, 10))
		return h.entityURL(typ, id, q)
	}
	if after > 0 {
		page.OlderURL = pageAt(max(0, after-historyPageSize))
	}
	if len(events) > 0 && events[len(events)-1].Seq < e.Latest {
		page.NewerURL = pageAt(events[len(events)-1].Seq)
	}
	if page.Timers, err = h.src.Timers(ctx, typ, id); err != nil {
		h.sourceError(w, "the entity's timers", err)
		return
	}
	h.render(w, http.StatusOK, "entity", page)
}

type consumersPage struct {
	basePage
	Consumers []Consumer
}

func (h *handler) consumers(w http.ResponseWriter, r *http.Request) {
	consumers, err := h.src.Consumers(r.Context())
	if err != nil {
		h.sourceError(w, "the consumers", err)
		return
	}
	h.render(w, http.StatusOK, "consumers", consumersPage{basePage: h.base("Consumers"), Consumers: consumers})
}

type clusterPage struct {
	basePage
	Cluster Cluster
}

func (h *handler) cluster(w http.ResponseWriter, r *http.Request) {
	c, err := h.src.Cluster(r.Context())
	if err != nil {
		h.sourceError(w, "the cluster", err)
		return
	}
	h.render(w, http.StatusOK, "cluster", clusterPage{basePage: h.base("Cluster"), Cluster: c})
}

func formatStoredAt(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04:05.000 UTC")
}

func formatLag(d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	switch {
	case d < time.Second:
		return d.Round(time.Millisecond).String()
	case d < time.Minute:
		return d.Round(100 * time.Millisecond).String()
	default:
		return d.Round(time.Second).String()
	}
}

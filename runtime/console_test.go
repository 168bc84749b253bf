package statefun_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestConsoleOnTheServer: a server that checks no access serves the
// console and the admin API (Connect JSON and its REST routes) on its HTTP
// port; what a cart's commands stored shows there, at each version.
func TestConsoleOnTheServer(t *testing.T) {
	base := serveHTTP(t)
	for _, sku := range []string{"apple", "pear"} {
		if code, body := post(t, base, cartPath+"AddItem", `{"cart_id":"c/1","sku":"`+sku+`","quantity":2}`, "Content-Type", "application/json"); code != http.StatusOK {
			t.Fatalf("AddItem: %d %s", code, body)
		}
	}
	code, body := rest(t, http.MethodGet, base+"/console/", "")
	if code != http.StatusOK || !strings.Contains(body, "shopping-cart") {
		t.Fatalf("GET /console/: %d, want the overview listing shopping-cart:\n%s", code, body)
	}
	code, body = rest(t, http.MethodGet, base+"/console/entities/shopping-cart/c%2F1?seq=1", "")
	_, state, _ := strings.Cut(body, `<pre id="state">`)
	state, _, _ = strings.Cut(state, "</pre>")
	if code != http.StatusOK || !strings.Contains(state, "apple") || strings.Contains(state, "pear") {
		t.Fatalf("the cart at version 1: %d, state %q, want apple and no pear yet", code, state)
	}
	code, body = post(t, base, "/statefun.v1.AdminService/GetEntity", `{"entity_type":"shopping-cart","id":"c/1","seq":"1"}`, "Content-Type", "application/json")
	if code != http.StatusOK || !strings.Contains(body, "apple") || strings.Contains(body, "pear") || !strings.Contains(body, `"latest":"2"`) {
		t.Fatalf("GetEntity at seq 1 over Connect JSON: %d %s", code, body)
	}
	code, body = rest(t, http.MethodGet, base+"/v1/admin/entity-types/shopping-cart/events?id=c%2F1", "")
	if code != http.StatusOK || !strings.Contains(body, "ItemAdded") || !strings.Contains(body, "pear") {
		t.Fatalf("ListEvents over REST: %d %s", code, body)
	}
}

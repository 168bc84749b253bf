package statefun_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
)

// rest sends a REST call and returns the status and the response body.
func rest(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res.StatusCode, string(b)
}

// wantRESTError fails the test unless the response is a REST error: the
// HTTP status and a google.rpc.Status in JSON with the code and message.
func wantRESTError(t *testing.T, status int, body string, wantStatus, wantCode int, wantMessage string) {
	t.Helper()
	var got struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatalf("HTTP %d %q: not a google.rpc.Status: %v", status, body, err)
	}
	if status != wantStatus || got.Code != wantCode || got.Message != wantMessage {
		t.Errorf("got HTTP %d code %d: %s\nwant HTTP %d code %d: %s", status, got.Code, got.Message, wantStatus, wantCode, wantMessage)
	}
}

// The Device's REST routes bind its composite key, nested in the request,
// with path variables: a reading posted to one device's path is read back
// from that path only.
func TestRESTPathVariablesFillANestedKey(t *testing.T) {
	t.Parallel()
	base := serveHTTP(t)
	code, body := rest(t, http.MethodPost, base+"/v1/sites/s1/devices/7/readings", `{"celsius":21.5}`)
	if code != http.StatusOK || !strings.Contains(body, `"readings":"1"`) {
		t.Fatalf("POST a reading: HTTP %d %s, want the first reading", code, body)
	}
	code, body = rest(t, http.MethodGet, base+"/v1/sites/s1/devices/7", "")
	if code != http.StatusOK || !strings.Contains(body, `"celsius":21.5`) {
		t.Fatalf("GET the device: HTTP %d %s, want 21.5", code, body)
	}
	code, body = rest(t, http.MethodGet, base+"/v1/sites/s1/devices/8", "")
	if code != http.StatusOK || strings.TrimSpace(body) != "{}" {
		t.Fatalf("GET another device: HTTP %d %s, want an empty state", code, body)
	}
	// A key in the body is overridden by the path's.
	code, body = rest(t, http.MethodPost, base+"/v1/sites/s1/devices/7/readings", `{"device":{"site":"s2","serial":"9"},"celsius":22}`)
	if code != http.StatusOK || !strings.Contains(body, `"readings":"2"`) {
		t.Fatalf("POST a reading with another key in the body: HTTP %d %s, want device 7's second reading", code, body)
	}
	// A query parameter may set a field that neither the path nor the body
	// binds.
	code, body = rest(t, http.MethodGet, base+"/v1/sites/s1/devices/7?query.device.label=boiler", "")
	if code != http.StatusOK || !strings.Contains(body, `"readings":"2"`) {
		t.Fatalf("GET with a label in the query: HTTP %d %s, want device 7", code, body)
	}
	// An empty key is refused by name, as over gRPC.
	code, body = rest(t, http.MethodGet, base+"/v1/sites/s1/devices/0", "")
	wantRESTError(t, code, body, http.StatusBadRequest, 3,
		"missing entity key: field query.device.serial of statefun.testdata.nestedkey.LatestRequest is empty; set it to the key of the entity to address")
}

// A query parameter cannot redirect a REST call to another entity (or
// change what the path or body says): vanguard would let it override them.
func TestRESTQueryCannotOverrideThePathOrBody(t *testing.T) {
	t.Parallel()
	base := serveHTTP(t)
	for _, tc := range []struct {
		method, path, body, want string
	}{
		{http.MethodGet, "/v1/sites/s1/devices/7?query.device.serial=8", "",
			"query parameter query.device.serial sets field query.device.serial of statefun.testdata.nestedkey.LatestRequest, which the path of GET /v1/sites/{query.device.site}/devices/{query.device.serial} binds; leave it out of the query"},
		{http.MethodGet, "/v1/sites/s1/devices/7?query.device.site=s2", "",
			"query parameter query.device.site sets field query.device.site of statefun.testdata.nestedkey.LatestRequest, which the path of GET /v1/sites/{query.device.site}/devices/{query.device.serial} binds; leave it out of the query"},
		{http.MethodPost, "/v1/sites/s1/devices/7/readings?device.serial=8", `{"celsius":21}`,
			"query parameter device.serial sets field device.serial of statefun.testdata.nestedkey.RecordRequest, which the path of POST /v1/sites/{device.site}/devices/{device.serial}/readings binds; leave it out of the query"},
		{http.MethodPost, "/v1/sites/s1/devices/7/readings?celsius=40", `{"celsius":21}`,
			"query parameter celsius sets field celsius of statefun.testdata.nestedkey.RecordRequest, which the body of POST /v1/sites/{device.site}/devices/{device.serial}/readings binds; leave it out of the query"},
		{http.MethodGet, "/v1/sites/s1/devices/7?lable=x", "",
			"query parameter lable is not a field of statefun.testdata.nestedkey.LatestRequest; the fields are: query"},
	} {
		code, body := rest(t, tc.method, base+tc.path, tc.body)
		wantRESTError(t, code, body, http.StatusBadRequest, 3, tc.want)
	}
	code, body := rest(t, http.MethodGet, base+"/v1/sites/s1/devices/8", "")
	if code != http.StatusOK || strings.TrimSpace(body) != "{}" {
		t.Errorf("device 8 after the refused calls: HTTP %d %s, want no readings", code, body)
	}
}

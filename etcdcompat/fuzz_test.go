package etcdcompat

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// gatewayPaths are the unary and one-shot endpoints the fuzzer posts to.
var gatewayPaths = []string{
	"/v3/kv/range", "/v3/kv/put", "/v3/kv/deleterange", "/v3/kv/txn", "/v3/kv/compaction",
	"/v3/lease/grant", "/v3/lease/revoke", "/v3/lease/keepalive", "/v3/kv/lease/timetolive",
	"/v3/kv/lease/leases", "/v3/maintenance/status", "/v3/cluster/member/list", "/v3/auth/authenticate",
}

// FuzzGateway feeds arbitrary bodies to the HTTP/JSON gateway's decoding
// path. Whatever the bytes: no panic, a JSON answer with etcd's shape
// (a result, or an error with a code), and a refused request changes
// nothing in the store.
func FuzzGateway(f *testing.F) {
	seeds := []string{
		`{"key":"L2E=","value":"dg=="}`, `{"key":"L2E=","range_end":"L2I=","limit":0,"revision":0,"sort_order":0,"sort_target":0,"serializable":false,"keys_only":false,"count_only":false,"min_mod_revision":0,"max_mod_revision":0,"min_create_revision":0,"max_create_revision":0}`,
		`{"compare":[{"key":"L2E=","target":"MOD","result":"EQUAL","mod_revision":1}],"success":[{"requestPut":{"key":"L2E=","value":"dg=="}}]}`,
		`{"TTL":60,"ID":0}`, `{"ID":"1"}`, `{"key":`, ``, `null`, `[]`, `{"key":"!!"}`, `{"revision":"-1"}`,
		`{"success":[{"request_txn":{"success":[{"request_put":{"key":"L2E="}}]}}]}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), []byte(s))
	}
	c := startCompat(f, Options{})
	h := c.srv.Handler()
	f.Fuzz(func(t *testing.T, pathIdx uint8, body []byte) {
		path := gatewayPaths[int(pathIdx)%len(gatewayPaths)]
		before := c.st.Rev()
		req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(string(body)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		out := rec.Body.Bytes()
		if path == "/v3/lease/keepalive" && rec.Code == http.StatusOK {
			// A stream: zero or more {"result":...} lines.
			for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
				if line != "" && !json.Valid([]byte(line)) {
					t.Fatalf("keepalive line is not JSON: %q", line)
				}
			}
			return
		}
		var v map[string]any
		if err := json.Unmarshal(out, &v); err != nil {
			t.Fatalf("%s %q: answer %d is not a JSON object: %q", path, body, rec.Code, out)
		}
		if rec.Code != http.StatusOK {
			if _, ok := v["code"]; !ok || v["error"] == nil {
				t.Fatalf("%s %q: error %d without etcd's error body: %q", path, body, rec.Code, out)
			}
			if after := c.st.Rev(); after != before {
				t.Fatalf("%s %q: refused (%d) but revision moved %d -> %d", path, body, rec.Code, before, after)
			}
		}
	})
}

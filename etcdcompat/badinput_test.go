package etcdcompat

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

// TestDiffBadInput sends malformed bodies to the gateway: each answer
// (status and body) must be etcd's, and a refused request writes nothing:
// the final range must show exactly the writes etcd accepted too (unknown
// fields and trailing bytes are ignored by etcd's decoder).
func TestDiffBadInput(t *testing.T) {
	p := keyPrefix(t)
	k := b64(p + "k")
	cases := []struct{ path, body string }{
		{"/v3/kv/put", `{"key":`},
		{"/v3/kv/put", `{"key":"` + k + `","value":"!!notbase64"}`},
		{"/v3/kv/put", `{"key":"` + k + `","value":"dg=="`},
		{"/v3/kv/put", `{"key":"` + k + `","value":5}`},
		{"/v3/kv/put", `{"key":"` + k + `","lease":"abc"}`},
		{"/v3/kv/put", `{"key":"` + k + `","lease":{}}`},
		{"/v3/kv/put", `{"key":"` + k + `","prev_kv":"yes"}`},
		{"/v3/kv/put", `[1,2]`},
		{"/v3/kv/put", `null`},
		{"/v3/kv/put", ``},
		{"/v3/kv/put", `{}`},
		{"/v3/kv/put", `{"key":"` + k + `","value":"dg==","unknown_field":1}trailing`},
		{"/v3/kv/range", ``},
		{"/v3/kv/range", `{"key":"` + k + `","sort_order":"SIDEWAYS"}`},
		{"/v3/kv/range", `{"key":"` + k + `","sort_order":7}`},
		{"/v3/kv/range", `{"key":"` + k + `","limit":-1}`},
		{"/v3/kv/range", `{"key":"` + k + `","limit":"1e3"}`},
		{"/v3/kv/range", `{"key":"` + k + `","revision":-5}`},
		{"/v3/kv/range", `{"key":"` + k + `","revision":99999999999999999999}`},
		{"/v3/kv/deleterange", `{"key":true}`},
		{"/v3/kv/txn", `{"compare":[{"key":"` + k + `","target":"NOPE","result":"EQUAL"}]}`},
		{"/v3/kv/txn", `{"compare":{"key":"` + k + `"}}`},
		{"/v3/kv/txn", `{"success":[{"requestPut":{"key":"` + k + `","value":"%%%"}}]}`},
		{"/v3/kv/txn", `{"success":[{"request_put":{"key":"` + k + `","value":"dg=="}},{"requestPut":{"key":"` + k + `","value":"dg=="}}]}`},
		{"/v3/kv/txn", `{"success":[{"request_put":{"key":"` + k + `","value":"dg=="},"request_range":{"key":"` + k + `"}}]}`},
		{"/v3/kv/compaction", `{"revision":"x"}`},
		{"/v3/lease/grant", `{"TTL":"sixty"}`},
		{"/v3/lease/revoke", `{"ID":1.5}`},
		{"/v3/lease/keepalive", `{"ID":"x"}`},
		{"/v3/kv/nosuch", `{}`},
		{"/v4/kv/range", `{}`},
		{"/v3beta/kv/range", `{"key":"` + k + `"}`},
	}
	steps := make([]step, 0, len(cases)+2)
	for _, c := range cases {
		steps = append(steps, step{fmt.Sprintf("POST %s %.60s", c.path, c.body), func(t *testing.T, s *side) string {
			return s.post(t, c.path, c.body)
		}})
	}
	steps = append(steps,
		step{"GET on a POST endpoint", func(t *testing.T, s *side) string {
			resp, err := s.http.Get(s.base + "/v3/kv/range")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return fmt.Sprint(resp.StatusCode)
		}},
		step{"POST /version", func(t *testing.T, s *side) string {
			resp, err := s.http.Post(s.base+"/version", "", strings.NewReader(""))
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return fmt.Sprint(resp.StatusCode, resp.Header.Get("Allow"))
		}},
		step{"only the accepted writes landed", func(t *testing.T, s *side) string {
			return s.post(t, "/v3/kv/range", fmt.Sprintf(`{"key":"%s","range_end":"%s"}`, b64(p), b64(string(prefixEnd(p)))))
		}},
		step{"CORS preflight", func(t *testing.T, s *side) string {
			req, _ := http.NewRequest(http.MethodOptions, s.base+"/v3/kv/range", nil)
			resp, err := s.http.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return fmt.Sprint(resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
		}},
	)
	runDiff(t, steps)
}

// TestBodyLimit checks that a body larger than twice the gRPC message
// limit is refused while it is read (etcd would read it all, then answer
// ResourceExhausted), and that nothing is written.
func TestBodyLimit(t *testing.T) {
	c := startCompat(t, Options{MaxRequestBytes: 1024})
	s := newSide(t, "etcdcompat", c.url)
	rev := c.st.Rev()
	body := `{"key":"` + b64("/k") + `","value":"` + strings.Repeat("A", 2*(1024+grpcOverheadBytes)) + `"}`
	got := s.post(t, "/v3/kv/put", body)
	if !strings.HasPrefix(got, "400 ") || !strings.Contains(got, "http: request body too large") {
		t.Fatalf("oversized body: %s", got)
	}
	if c.st.Rev() != rev {
		t.Fatal("oversized body wrote something")
	}
	if got := s.post(t, "/v3/kv/put", `{"key":"`+b64("/k")+`","value":"dg=="}`); !strings.HasPrefix(got, "200 ") {
		t.Fatalf("small body after: %s", got)
	}
}

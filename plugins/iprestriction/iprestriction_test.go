package iprestriction_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/iprestriction"
)

func TestIPRestriction(t *testing.T) {
	e := plugintest.New(t)
	e.Route("allow", "/allow", `{"ip-restriction":{"whitelist":["127.0.0.0/8","::1"]}}`)
	e.Route("deny", "/deny", `{"ip-restriction":{"blacklist":["127.0.0.1"],"message":"go away"}}`)
	e.Route("deny404", "/deny404", `{"ip-restriction":{"blacklist":["10.0.0.0/8","127.0.0.0/24"],"response_code":404}}`)
	e.Route("other", "/other", `{"ip-restriction":{"whitelist":["192.0.2.0/24"]}}`)
	for _, tc := range []struct {
		path   string
		status int
		body   string
	}{
		{"/allow", 200, `"path":"/allow"`},
		{"/deny", 403, `{"message":"go away"}`},
		{"/deny404", 404, `{"message":"Your IP address is not allowed"}`},
		{"/other", 403, `{"message":"Your IP address is not allowed"}`},
	} {
		r := e.Do("GET", tc.path)
		if r.Status != tc.status || !strings.Contains(r.Body, tc.body) {
			t.Errorf("%s: %d %q, want %d %q", tc.path, r.Status, r.Body, tc.status, tc.body)
		}
	}
}

func TestIPRestrictionRejectsBadConfig(t *testing.T) {
	e := plugintest.New(t)
	for i, tc := range []struct{ cfg, field string }{
		{`{"whitelist":["300.1.1.1"]}`, "whitelist[0]"},
		{`{"whitelist":["1.1.1.1"],"blacklist":["2.2.2.2"]}`, "whitelist|blacklist"},
		{`{}`, "whitelist|blacklist"},
		{`{"blacklist":["1.1.1.1"],"response_code":500}`, "response_code"},
		{`{"blacklist":["1.1.1.1"],"typo":1}`, "typo"},
	} {
		e.Rejected(fmt.Sprint("bad", i), "/bad", `{"ip-restriction":`+tc.cfg+`}`, tc.field)
	}
	if r := e.Do("GET", "/bad"); r.Status != 404 {
		t.Errorf("a route with a bad plugin config is served: %d", r.Status)
	}
}

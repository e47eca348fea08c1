package responserewrite_test

import (
	"strings"
	"testing"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/responserewrite"
)

func TestResponseRewrite(t *testing.T) {
	e := plugintest.New(t)
	e.Route("all", "/all", `{"response-rewrite":{"status_code":201,"body":"replaced","headers":{"set":{"X-Route":"$uri"},"add":["X-Added: 1"],"remove":["X-Backend"]}}}`)
	e.Route("vars", "/vars", `{"response-rewrite":{"body":"matched","vars":[["arg_x","==","1"]]}}`)
	e.Route("filters", "/filters", `{"response-rewrite":{"filters":[{"regex":"echo","scope":"global","replace":"ECHO"},{"regex":"GET","replace":"G-E-T"}]}}`)
	e.Route("legacy", "/legacy", `{"response-rewrite":{"headers":{"X-Backend":"","X-New":"v"}}}`)

	r := e.Do("GET", "/all")
	if r.Status != 201 || r.Body != "replaced" || r.Header.Get("X-Route") != "/all" || r.Header.Get("X-Added") != "1" || r.Header.Get("X-Backend") != "" {
		t.Errorf("all: %d %q %v", r.Status, r.Body, r.Header)
	}
	if r := e.Do("GET", "/vars?x=1"); r.Body != "matched" {
		t.Errorf("vars match: %q", r.Body)
	}
	if r := e.Do("GET", "/vars?x=2"); !strings.Contains(r.Body, `"path":"/vars"`) {
		t.Errorf("vars no match: %q", r.Body)
	}
	if r := e.Do("GET", "/filters"); !strings.Contains(r.Body, `"method":"G-E-T"`) {
		t.Errorf("filters: %q", r.Body)
	}
	if r := e.Do("GET", "/legacy"); r.Header.Get("X-Backend") != "" || r.Header.Get("X-New") != "v" {
		t.Errorf("legacy headers: %v", r.Header)
	}
	e.Rejected("bad", "/bad", `{"response-rewrite":{"status_code":99}}`, "status_code")
	e.Rejected("bad2", "/bad2", `{"response-rewrite":{"body":"a","filters":[{"regex":"a","replace":"b"}]}}`, "body|filters")
	e.Rejected("bad3", "/bad3", `{"response-rewrite":{"headers":{"add":["nocolon"]}}}`, "headers.add[0]")
}

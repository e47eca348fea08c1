package redirect_test

import (
	"testing"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/redirect"
)

func TestRedirect(t *testing.T) {
	e := plugintest.New(t)
	e.Route("https", "/https", `{"redirect":{"http_to_https":true}}`)
	e.Route("uri", "/uri", `{"redirect":{"uri":"/new$uri?from=$host","ret_code":301}}`)
	e.Route("re", "/old/*", `{"redirect":{"regex_uri":["^/old/(.*)$","/new/$1"],"append_query_string":true}}`)
	for _, tc := range []struct {
		path, host string
		status     int
		loc        string
	}{
		{"/https?a=1", "example.com:8080", 301, "https://example.com/https?a=1"},
		{"/uri", "h.example", 301, "/new/uri?from=h.example"},
		{"/old/x/y?q=2", "h", 302, "/new/x/y?q=2"},
	} {
		r := e.Do("GET", tc.path, "Host: "+tc.host)
		if r.Status != tc.status || r.Header.Get("Location") != tc.loc {
			t.Errorf("%s: %d %q, want %d %q", tc.path, r.Status, r.Header.Get("Location"), tc.status, tc.loc)
		}
	}
	e.Rejected("bad", "/bad", `{"redirect":{"uri":"/a","http_to_https":true}}`, "http_to_https|uri|regex_uri")
	e.Rejected("bad2", "/bad2", `{"redirect":{"regex_uri":["("]}}`, "regex_uri")
}

package proxyrewrite_test

import (
	"testing"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/proxyrewrite"
)

func TestProxyRewriteSchema(t *testing.T) {
	e := plugintest.New(t)
	cases := []struct{ plugins, field string }{
		{`{"proxy-rewrite":{"uri":"no-slash"}}`, "uri"},
		{`{"proxy-rewrite":{"regex_uri":["^/a"]}}`, "regex_uri"},
		{`{"proxy-rewrite":{"regex_uri":["(","x"]}}`, "regex_uri"},
		{`{"proxy-rewrite":{"method":"FETCH"}}`, "method"},
		{`{"proxy-rewrite":{"scheme":"ftp"}}`, "scheme"},
		{`{"proxy-rewrite":{"headers":{"set":{"bad name":"x"}}}}`, "headers.set"},
		{`{"proxy-rewrite":{"headers":{"add":{"a":"b"},"typo":1}}}`, "typo"},
		{`{"proxy-rewrite":{"hots":"x"}}`, "hots"},
	}
	for i, c := range cases {
		e.Rejected("bad"+string(rune('a'+i)), "/bad", c.plugins, c.field)
	}
}

func TestProxyRewriteURIAndMethod(t *testing.T) {
	e := plugintest.New(t)
	e.Route("r", "/in/*", `{"proxy-rewrite":{"uri":"/out/$arg_name","method":"POST"}}`)
	var got plugintest.Echoed
	e.Do("GET", "/in/x?name=bob").JSON(t, &got)
	if got.Path != "/out/bob" || got.Method != "POST" {
		t.Fatalf("upstream saw %s %s", got.Method, got.Path)
	}
}

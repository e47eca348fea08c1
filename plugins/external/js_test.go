package external_test

import (
	"context"
	"testing"
	"time"

	"github.com/meshagent/meshagent/plugins/external"
	"github.com/meshagent/meshagent/plugins/external/pluginv1"
	"github.com/meshagent/meshagent/plugins/plugintest"
)

func jsPlugin(t *testing.T) (node, script string) {
	t.Helper()
	node, script, why := plugintest.JSPlugin()
	if why != "" {
		t.Skip(why)
	}
	return node, script
}

func TestJavaScriptPlugin(t *testing.T) {
	node, script := jsPlugin(t)
	p, err := external.Start(external.Config{Name: "jsheader", Path: node, Args: []string{script}, StartTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	ctx := context.Background()
	if _, err := p.Configure(ctx, []byte(`{"header":"x-js","bogus":1}`)); err == nil {
		t.Fatal("unknown field accepted")
	}
	c, err := p.Configure(ctx, []byte(`{"header":"x-js","value":"hi","deny_path":"/no"}`))
	if err != nil {
		t.Fatal(err)
	}
	m, err := c.RequestHeaders(ctx, &pluginv1.HTTPRequest{Method: "GET", Path: "/yes"})
	if err != nil {
		t.Fatal(err)
	}
	if len(m.SetHeaders) != 1 || m.SetHeaders[0].Key != "x-js" || m.SetHeaders[0].Value != "hi" {
		t.Fatalf("mutation %v", m)
	}
	m, err = c.RequestHeaders(ctx, &pluginv1.HTTPRequest{Method: "GET", Path: "/no"})
	if err != nil || m.Status != 403 || string(m.Body) != "denied by js plugin" {
		t.Fatalf("deny: %v %v", m, err)
	}
}

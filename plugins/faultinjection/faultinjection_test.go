package faultinjection_test

import (
	"testing"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/faultinjection"
)

func TestFaultInjectionSchema(t *testing.T) {
	e := plugintest.New(t)
	cases := []struct{ plugins, field string }{
		{`{"fault-injection":{}}`, "abort|delay"},
		{`{"fault-injection":{"abort":{"http_status":100}}}`, "abort.http_status"},
		{`{"fault-injection":{"abort":{"http_status":500,"percentage":101}}}`, "abort.percentage"},
		{`{"fault-injection":{"delay":{"duration":0}}}`, "delay.duration"},
		{`{"fault-injection":{"delay":{"duration":1,"vars":[[["a","bogus-op","1"]]]}}}`, "delay.vars"},
		{`{"fault-injection":{"abort":{"http_status":500,"status":1}}}`, "status"},
	}
	for i, c := range cases {
		e.Rejected("bad"+string(rune('a'+i)), "/bad", c.plugins, c.field)
	}
}

func TestFaultInjectionAbortHeaders(t *testing.T) {
	e := plugintest.New(t)
	e.Route("a", "/a", `{"fault-injection":{"abort":{"http_status":503,"body":"down","headers":{"X-Fault":"yes"},"vars":[[["http_x_fail","==","1"]]]}}}`)
	if r := e.Do("GET", "/a", "X-Fail: 1"); r.Status != 503 || r.Body != "down" || r.Header.Get("X-Fault") != "yes" {
		t.Fatalf("abort: %d %q %v", r.Status, r.Body, r.Header)
	}
	if r := e.Do("GET", "/a"); r.Status != 200 {
		t.Fatalf("no match: %d", r.Status)
	}
}

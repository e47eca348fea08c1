package plugins

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
)

// recCtx is a minimal Ctx recording what filters do; the data plane's real
// contexts are exercised through HTTP in package dataplane.
type recCtx struct {
	Ctx
	trace     []string
	responded bool
	status    int
}

func (c *recCtx) Respond(status int, _ []byte) { c.responded, c.status = true, status }
func (c *recCtx) Responded() bool              { return c.responded }

type step1 struct {
	name string
	st   Status
	resp bool
	pan  bool
}

func (s step1) Rewrite(c Ctx) Status {
	r := c.(*recCtx)
	r.trace = append(r.trace, s.name)
	if s.pan {
		panic("boom")
	}
	if s.resp {
		c.Respond(403, nil)
	}
	return s.st
}

func TestChainOrderAndEnforcement(t *testing.T) {
	cases := []struct {
		name      string
		global    []Entry
		route     []Entry
		trace     string
		status    Status
		fault     Fault
		plugin    string
		respCode  int
		responded bool
	}{
		{
			name:   "priority order, global first",
			global: []Entry{{"g-low", 1, step1{name: "g-low"}}, {"g-high", 100, step1{name: "g-high"}}},
			route:  []Entry{{"r-b", 50, step1{name: "r-b"}}, {"r-a", 50, step1{name: "r-a"}}, {"r-top", 9000, step1{name: "r-top"}}},
			trace:  "g-high,g-low,r-top,r-a,r-b",
		},
		{
			name:  "stop with response ends the phase",
			route: []Entry{{"a", 2, step1{name: "a", st: Stop, resp: true}}, {"b", 1, step1{name: "b"}}},
			trace: "a", status: Stop, plugin: "a", respCode: 403, responded: true,
		},
		{
			name:  "stop without response becomes 500",
			route: []Entry{{"lazy", 1, step1{name: "lazy", st: Stop}}},
			trace: "lazy", status: Stop, fault: FaultStopWithoutResponse, plugin: "lazy", respCode: 500, responded: true,
		},
		{
			name:  "panic becomes 500",
			route: []Entry{{"bad", 2, step1{name: "bad", pan: true}}, {"next", 1, step1{name: "next"}}},
			trace: "bad", status: Stop, fault: FaultPanic, plugin: "bad", respCode: 500, responded: true,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ch := NewChain(c.global, c.route)
			x := &recCtx{}
			res := ch.Run(PhaseRewrite, x)
			if got := strings.Join(x.trace, ","); got != c.trace {
				t.Fatalf("trace %q, want %q", got, c.trace)
			}
			if res.Status != c.status || res.Fault != c.fault || res.Plugin != c.plugin {
				t.Fatalf("result %+v", res)
			}
			if x.responded != c.responded || x.status != c.respCode {
				t.Fatalf("responded=%v status=%d", x.responded, x.status)
			}
			if ch.Has(PhaseAccess) {
				t.Fatal("no filter implements access")
			}
		})
	}
}

func TestStringers(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{Continue.String(), "Continue"}, {Stop.String(), "Stop"}, {Status(9).String(), "Status(9)"},
		{PhaseBeforeProxy.String(), "before_proxy"}, {PhaseLog.String(), "log"}, {Phase(42).String(), "Phase(42)"},
		{FaultPanic.String(), "panic"}, {FaultStopWithoutResponse.String(), "stop_without_response"},
	} {
		if c.got != c.want {
			t.Errorf("%q != %q", c.got, c.want)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	type conf struct {
		A int    `json:"a"`
		B string `json:"b,omitempty"`
	}
	cases := []struct {
		in   string
		want string // substring of the error; "" = ok
	}{
		{`{"a":1}`, ""},
		{``, ""},
		{`{"a":1,"c":2}`, `unknown field "c"`},
		{`{"a":"x"}`, `field "a"`},
		{`{"a":1} {}`, "trailing data"},
	}
	for _, c := range cases {
		var v conf
		err := Decode(json.RawMessage(c.in), &v)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.in, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !errors.Is(err, ErrInvalidConfig)):
			t.Errorf("%s: err %v, want %q wrapping ErrInvalidConfig", c.in, err, c.want)
		}
	}
}

func init() {
	Register(Plugin{Name: "test-noop", Priority: 1, New: func(json.RawMessage, Builder) (any, error) { return step1{name: "noop"}, nil }})
}

func TestRegistryIsInitOnly(t *testing.T) {
	if _, ok := Lookup("test-noop"); !ok {
		t.Fatal("test-noop not registered")
	}
	if _, err := Build("nope", nil, nil); !errors.Is(err, ErrUnknownPlugin) {
		t.Fatalf("unknown plugin: %v", err)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Register after the registry was read must panic")
		}
	}()
	Register(Plugin{Name: "late", New: func(json.RawMessage, Builder) (any, error) { return nil, nil }})
}

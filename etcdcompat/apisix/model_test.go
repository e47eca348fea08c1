package apisix

import (
	"encoding/json"
	"reflect"
	"testing"
)

func TestNodesRoundTrip(t *testing.T) {
	cases := []struct {
		name string
		in   string
		want Nodes
	}{
		{"map", `{"127.0.0.1:80":1,"[::1]:8080":2,"example.com":0,"[fe80::1]":3,"2001:db8::1":4}`, Nodes{
			{Host: "127.0.0.1", Port: 80, Weight: 1},
			{Host: "[::1]", Port: 8080, Weight: 2},
			{Host: "example.com", Weight: 0},
			{Host: "[fe80::1]", Weight: 3},
			{Host: "[2001:db8::1]", Weight: 4},
		}},
		{"array", `[{"host":"a.com","port":443,"weight":5,"priority":-1,"metadata":{"zone":"z1"}},{"host":"[::1]","weight":1}]`, Nodes{
			{Host: "a.com", Port: 443, Weight: 5, Priority: -1, Metadata: map[string]any{"zone": "z1"}},
			{Host: "[::1]", Weight: 1},
		}},
		{"empty map", `{}`, Nodes{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			v, err := DecodeKind(KindUpstream, []byte(`{"nodes":`+tc.in+`}`))
			if err != nil {
				t.Fatal(err)
			}
			got := v.(*Upstream).Nodes
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("nodes = %#v, want %#v", got, tc.want)
			}
			// Encode is the array form; decoding it again gives the same nodes.
			b, err := json.Marshal(got)
			if err != nil {
				t.Fatal(err)
			}
			if b[0] != '[' {
				t.Fatalf("encoded %s, want array form", b)
			}
			v2, err := DecodeKind(KindUpstream, []byte(`{"nodes":`+string(b)+`}`))
			if err != nil {
				t.Fatalf("re-decode %s: %v", b, err)
			}
			if got2 := v2.(*Upstream).Nodes; !reflect.DeepEqual(got2, tc.want) {
				t.Fatalf("round trip = %#v, want %#v", got2, tc.want)
			}
			// Plain encoding/json reads both forms too.
			var n Nodes
			if err := json.Unmarshal([]byte(tc.in), &n); err != nil || !reflect.DeepEqual(n, tc.want) {
				t.Fatalf("json.Unmarshal = %#v, %v", n, err)
			}
		})
	}
}

func TestIDForms(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want ID
		ok   bool
	}{
		{`"abc-1_2.x"`, "abc-1_2.x", true},
		{`12`, "12", true},
		{`3.0`, "3", true},
		{`0`, "", false},
		{`-4`, "", false},
		{`1.5`, "", false},
		{`""`, "", false},
		{`"a/b"`, "", false},
		{`true`, "", false},
	} {
		var id ID
		err := json.Unmarshal([]byte(tc.in), &id)
		if (err == nil) != tc.ok || id != tc.want {
			t.Errorf("ID(%s) = %q, %v; want %q ok=%v", tc.in, id, err, tc.want, tc.ok)
		}
	}
}

func TestDefaultsFilled(t *testing.T) {
	v, err := DecodeKind(KindUpstream, []byte(`{"nodes":{"a:1":1},"keepalive_pool":{},"checks":{"active":{},"passive":{}}}`))
	if err != nil {
		t.Fatal(err)
	}
	u := v.(*Upstream)
	yes := true
	want := &Upstream{
		Nodes: Nodes{{Host: "a", Port: 1, Weight: 1}},
		Type:  "roundrobin", HashOn: "vars", Scheme: "http", PassHost: "pass",
		KeepalivePool: &KeepalivePool{Size: 320, IdleTimeout: 60, Requests: 1000},
		Checks: &Checks{
			Active: &ActiveCheck{Type: "http", Timeout: 1, Concurrency: 10, HTTPPath: "/", HTTPMethod: "GET",
				HTTPSVerifyCertificate: &yes,
				Healthy:                &ActiveHealthy{Interval: 1, HTTPStatuses: []int{200, 302}, Successes: 2},
				Unhealthy: &ActiveUnhealthy{Interval: 1, HTTPStatuses: []int{429, 404, 500, 501, 502, 503, 504, 505},
					HTTPFailures: 5, TCPFailures: 2, Timeouts: 3}},
			Passive: &PassiveCheck{Type: "http",
				Healthy: &PassiveHealthy{HTTPStatuses: []int{200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
					300, 301, 302, 303, 304, 305, 306, 307, 308}, Successes: 5},
				Unhealthy: &PassiveUnhealthy{HTTPStatuses: []int{429, 500, 503}, TCPFailures: 2, Timeouts: 7, HTTPFailures: 5}},
		},
	}
	if !reflect.DeepEqual(u, want) {
		a, _ := json.Marshal(u)
		b, _ := json.Marshal(want)
		t.Fatalf("defaults:\n got %s\nwant %s", a, b)
	}

	// Explicit values win over defaults, including explicit zeros where
	// APISIX allows them.
	v, err = DecodeKind(KindUpstream, []byte(`{"nodes":{"a:1":1},"type":"ewma","keepalive_pool":{"idle_timeout":0},
		"checks":{"active":{"timeout":3,"healthy":{"successes":7}},"passive":{"healthy":{"successes":0},"unhealthy":{"tcp_failures":0}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	u = v.(*Upstream)
	if u.Type != "ewma" || u.KeepalivePool.IdleTimeout != 0 || u.KeepalivePool.Size != 320 ||
		u.Checks.Active.Timeout != 3 || u.Checks.Active.Healthy.Successes != 7 || u.Checks.Active.Healthy.Interval != 1 ||
		u.Checks.Passive.Healthy.Successes != 0 || u.Checks.Passive.Unhealthy.TCPFailures != 0 || u.Checks.Passive.Unhealthy.Timeouts != 7 {
		b, _ := json.Marshal(u)
		t.Fatalf("explicit values lost: %s", b)
	}

	v, err = DecodeKind(KindSSL, []byte(expand(t, `{"cert":"{{CERT}}","key":"{{KEY}}","sni":"a.com","client":{"ca":"{{CERT}}"}}`)))
	if err != nil {
		t.Fatal(err)
	}
	s := v.(*SSL)
	if s.Type != "server" || s.Client.Depth != 1 || !s.Enabled() {
		t.Fatalf("ssl defaults: type %q depth %d", s.Type, s.Client.Depth)
	}
}

func TestPluginMetadataJSON(t *testing.T) {
	v, err := DecodeKind(KindPluginMetadata, []byte(`{"id":"http-logger","log_format":{"host":"$host"},"b":1}`))
	if err != nil {
		t.Fatal(err)
	}
	pm := v.(*PluginMetadata)
	if pm.ID != "http-logger" || string(pm.Fields["b"]) != "1" || len(pm.Fields) != 2 {
		t.Fatalf("decoded %+v", pm)
	}
	b, err := json.Marshal(pm)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != `{"id":"http-logger","b":1,"log_format":{"host":"$host"}}` {
		t.Fatalf("encoded %s", b)
	}
	var back PluginMetadata
	if err := json.Unmarshal(b, &back); err != nil || !reflect.DeepEqual(&back, pm) {
		t.Fatalf("round trip %+v %v", back, err)
	}
}

func TestKindString(t *testing.T) {
	want := []string{"route", "upstream", "service", "ssl", "plugin_config", "global_rule", "consumer",
		"consumer_group", "stream_route", "plugin_metadata", "proto", "listener", "credential"}
	ks := Kinds()
	if len(ks) != len(want) {
		t.Fatalf("Kinds() = %v", ks)
	}
	for i, k := range ks {
		if k.String() != want[i] {
			t.Errorf("Kind(%d).String() = %q, want %q", k, k, want[i])
		}
		if d := k.Dir(); d != "" && KindOfDir(d) != k {
			t.Errorf("KindOfDir(%q) = %v, want %v", d, KindOfDir(d), k)
		}
	}
	if Kind(99).String() != "unknown" || KindUnknown.String() != "unknown" {
		t.Error("unknown kinds must print as unknown")
	}
}

package apisix

import (
	"errors"
	"strings"
	"testing"
)

func TestParseKey(t *testing.T) {
	cases := []struct {
		key  string
		kind Kind
		id   string
		ok   bool
	}{
		{"/apisix/routes/1", KindRoute, "1", true},
		{"/apisix/upstreams/up-a.b_c", KindUpstream, "up-a.b_c", true},
		{"/apisix/services/s", KindService, "s", true},
		{"/apisix/ssls/0001", KindSSL, "0001", true},
		{"/apisix/plugin_configs/p", KindPluginConfig, "p", true},
		{"/apisix/global_rules/g", KindGlobalRule, "g", true},
		{"/apisix/consumers/jack", KindConsumer, "jack", true},
		{"/apisix/consumers/jack/credentials/c1", KindCredential, "jack/credentials/c1", true},
		{"/apisix/consumer_groups/cg", KindConsumerGroup, "cg", true},
		{"/apisix/stream_routes/sr", KindStreamRoute, "sr", true},
		{"/apisix/plugin_metadata/http-logger", KindPluginMetadata, "http-logger", true},
		{"/apisix/protos/p1", KindProto, "p1", true},
		{"/meshagent/listeners/virtualInbound", KindListener, "virtualInbound", true},
		{"/apisix/routes/", KindUnknown, "", false},
		{"/apisix/routes", KindUnknown, "", false},
		{"/apisix/plugins", KindUnknown, "", false},
		{"/apisix/gen_id", KindUnknown, "", false},
		{"/apisix/secrets/vault/1", KindUnknown, "", false},
		{"/apisix/services/s/graphql_cost_decorations/1", KindUnknown, "", false},
		{"/apisix/consumers/jack/other/c1", KindUnknown, "", false},
		{"/apisix/consumers/jack/credentials/", KindUnknown, "", false},
		{"/other/routes/1", KindUnknown, "", false},
		{"/apisixx/routes/1", KindUnknown, "", false},
		{"/meshagent/listeners/", KindUnknown, "", false},
		{"/meshagent/listeners/a/b", KindUnknown, "", false},
	}
	for _, tc := range cases {
		k, id, ok := ParseKey("/apisix", tc.key)
		if k != tc.kind || id != tc.id || ok != tc.ok {
			t.Errorf("ParseKey(%q) = %v %q %v, want %v %q %v", tc.key, k, id, ok, tc.kind, tc.id, tc.ok)
		}
		if ok {
			if back := Key("/apisix", k, id); back != tc.key {
				t.Errorf("Key(%v, %q) = %q, want %q", k, id, back, tc.key)
			}
		}
	}
	if k, id, ok := ParseKey("/custom/pfx", "/custom/pfx/routes/7"); !ok || k != KindRoute || id != "7" {
		t.Errorf("custom prefix: %v %q %v", k, id, ok)
	}
}

func TestInitDirs(t *testing.T) {
	got := InitDirs("/apisix")
	want := []string{"/apisix/consumer_groups/", "/apisix/consumers/", "/apisix/global_rules/", "/apisix/plugin_configs/",
		"/apisix/plugin_metadata/", "/apisix/plugins/", "/apisix/protos/", "/apisix/routes/", "/apisix/secrets/",
		"/apisix/services/", "/apisix/ssls/", "/apisix/stream_routes/", "/apisix/upstreams/"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("InitDirs = %v", got)
	}
	for _, k := range got {
		if v, err := Decode([]byte(k), []byte(InitDirValue)); v != nil || err != nil {
			t.Errorf("Decode(placeholder %s) = %v, %v", k, v, err)
		}
	}
}

func TestDecodeStoreKeys(t *testing.T) {
	cases := []struct {
		key, value string
		wantNil    bool
		wantErr    string
		check      func(t *testing.T, v any)
	}{
		{key: "/apisix/gen_id", value: "12", wantNil: true},
		{key: "/apisix/plugins", value: `[{"name":"x"}]`, wantNil: true},
		{key: "/apisix/secrets/vault/1", value: `{}`, wantNil: true},
		{key: "/apisix/routes/", value: "init_dir", wantNil: true},
		{key: "/elsewhere/x", value: "garbage", wantNil: true},
		{key: "/apisix/routes/r1", value: `{"id":"other","uri":"/a","upstream_id":1}`, check: func(t *testing.T, v any) {
			if r := v.(*Route); r.ID != "r1" || r.URI != "/a" || r.UpstreamID != "1" {
				t.Fatalf("route %+v: id must be taken from the key", r)
			}
		}},
		{key: "/apisix/routes/r1", value: `{"uri":"/a"}`, wantErr: `apisix: route "r1": upstream: one of plugins`},
		{key: "/apisix/routes/r1", value: `not json`, wantErr: `apisix: route "r1": invalid JSON`},
		{key: "/apisix/routes/bad id", value: `{"uri":"/a","plugins":{}}`, wantErr: `apisix: route "bad id": id: key id must be`},
		{key: "/apisix/upstreams/u1", value: `{"nodes":{"a:1":1},"retries":-1}`, wantErr: `apisix: upstream "u1": retries: must be >= 0`},
		{key: "/apisix/consumers/jack", value: `{"username":"jack"}`, check: func(t *testing.T, v any) {
			if c := v.(*Consumer); c.ID != "jack" || c.ObjectID() != "jack" {
				t.Fatalf("consumer %+v", c)
			}
		}},
		{key: "/apisix/consumers/jack", value: `{"username":"rose"}`, wantErr: `apisix: consumer "jack": username: must equal the key's id`},
		{key: "/apisix/consumers/jack/credentials/c1", value: `{"plugins":{"key-auth":{"key":"a"}}}`, check: func(t *testing.T, v any) {
			if c := v.(*Credential); c.ID != "jack/credentials/c1" || len(c.Plugins) != 1 {
				t.Fatalf("credential %+v", c)
			}
		}},
		{key: "/apisix/plugin_metadata/file-logger", value: `{"path":"/tmp/x"}`, check: func(t *testing.T, v any) {
			if pm := v.(*PluginMetadata); pm.ID != "file-logger" || string(pm.Fields["path"]) != `"/tmp/x"` {
				t.Fatalf("plugin metadata %+v", pm)
			}
		}},
		{key: "/apisix/plugin_configs/pc", value: `{"plugins":{}}`, check: func(t *testing.T, v any) {
			if pc := v.(*PluginConfig); pc.ID != "pc" {
				t.Fatalf("plugin config %+v", pc)
			}
		}},
		{key: "/meshagent/listeners/l1", value: `{"address":"127.0.0.1:0","filter_chains":[{"kind":"http","route_config":"rc"}]}`, check: func(t *testing.T, v any) {
			if l := v.(*Listener); l.ID != "l1" || l.FilterChains[0].RouteConfig != "rc" {
				t.Fatalf("listener %+v", l)
			}
		}},
		{key: "/meshagent/listeners/l1", value: `{"address":"x"}`, wantErr: `apisix: listener "l1": address: must be host:port`},
	}
	for _, tc := range cases {
		v, err := Decode([]byte(tc.key), []byte(tc.value))
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Decode(%s) error = %v, want %q", tc.key, err, tc.wantErr)
			} else if !errors.Is(err, ErrInvalid) {
				t.Errorf("Decode(%s) error %v does not wrap ErrInvalid", tc.key, err)
			}
		case tc.wantNil:
			if v != nil || err != nil {
				t.Errorf("Decode(%s) = %v, %v; want nil, nil", tc.key, v, err)
			}
		default:
			if err != nil {
				t.Errorf("Decode(%s): %v", tc.key, err)
				continue
			}
			tc.check(t, v)
		}
	}
	// NewDecoder honours its prefix.
	dec := NewDecoder("/gw")
	if v, err := dec([]byte("/gw/routes/1"), []byte(`{"uri":"/","plugins":{}}`)); err != nil || v.(*Route).ID != "1" {
		t.Fatalf("NewDecoder: %v %v", v, err)
	}
	if v, err := dec([]byte("/apisix/routes/1"), []byte(`garbage`)); v != nil || err != nil {
		t.Fatalf("NewDecoder must ignore other prefixes: %v %v", v, err)
	}
}

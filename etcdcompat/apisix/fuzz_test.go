package apisix

import (
	"encoding/json"
	"testing"
)

// FuzzDecode feeds arbitrary bytes to the decoder of every kind: it must
// never panic, and whatever it accepts must re-encode to JSON that it
// accepts again (the encoded form is what producers such as the xDS
// translation write).
func FuzzDecode(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add(uint8(tc.kind), []byte(expand(f, tc.doc)))
	}
	f.Add(uint8(KindRoute), []byte(`{"uri":"/a","vars":[["OR",["a","~~","x"],["b","ipmatch",["::1"]]]],"plugins":{}}`))
	f.Add(uint8(KindUpstream), []byte(`{"nodes":{"[::1]":1,"a":0}}`))
	f.Add(uint8(KindCredential), []byte(`{"id":"u/credentials/c","plugins":{"a":{}}}`))
	f.Fuzz(func(t *testing.T, k uint8, data []byte) {
		kind := Kind(int(k) % (int(KindCredential) + 1))
		v, err := DecodeKind(kind, data)
		if err != nil {
			if kind != KindUnknown && v != nil {
				t.Fatalf("error %v with value %v", err, v)
			}
			return
		}
		// Key-based decoding of the same bytes must not panic either.
		_, _ = Decode([]byte(Key(DefaultPrefix, kind, "id1")), data)
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatalf("accepted %s but cannot encode: %v", data, err)
		}
		if _, err := DecodeKind(kind, b); err != nil && !encodingLossy(kind) {
			t.Fatalf("accepted %s, re-encoded %s rejected: %v", data, b, err)
		}
	})
}

// encodingLossy reports kinds whose Go encoding may drop presence that
// APISIX's schema depends on: omitempty drops an empty "plugins": {} (the
// only target of a route) and empty map-form "nodes": {} (an upstream's
// required nodes), so their re-encoded form may be rejected.
func encodingLossy(k Kind) bool {
	switch k {
	case KindRoute, KindUpstream, KindService, KindStreamRoute:
		return true
	}
	return false
}

// FuzzStandalone feeds arbitrary bytes to LoadStandalone: it must never
// panic, and every item it accepts must decode through the store decoder.
func FuzzStandalone(f *testing.F) {
	f.Add([]byte(sampleYAML))
	f.Add([]byte("routes:\n  - {uri: /a, plugins: {}}\n#END"))
	f.Add([]byte("a: &a [*a]\n#END"))
	f.Add([]byte("upstreams:\n  - &x {id: u, nodes: {\"a:1\": 1}}\n  - *x\n#END"))
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := LoadStandalone(data)
		if err != nil {
			return
		}
		for _, it := range s.Items() {
			if _, err := Decode([]byte(Key(DefaultPrefix, it.Kind, it.ID)), it.JSON); err != nil {
				t.Fatalf("item %v %q stored form rejected: %v", it.Kind, it.ID, err)
			}
		}
	})
}

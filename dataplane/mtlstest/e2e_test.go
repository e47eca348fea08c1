package mtlstest

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// pair is a client meshagent originating mTLS to a server meshagent that
// terminates it in front of a plain backend.
type pair struct {
	ca             *CA
	srv, cli       *agent
	srvAddr, entry string
}

type pairOpts struct {
	serverLeaf, clientLeaf *Leaf
	clientCA               string // CA bundle the client trusts ("" = ca)
	serverSAN              string
	chains                 []map[string]any
}

func newPair(t *testing.T, ca *CA, o pairOpts) *pair {
	t.Helper()
	if o.serverLeaf == nil {
		o.serverLeaf = ca.MustIssue("spiffe://default/backend", time.Hour, ECDSA)
	}
	if o.clientLeaf == nil {
		o.clientLeaf = ca.MustIssue("spiffe://default/web", time.Hour, ECDSA)
	}
	if o.clientCA == "" {
		o.clientCA = ca.PEM
	}
	if o.serverSAN == "" {
		o.serverSAN = "spiffe://default/backend"
	}
	if o.chains == nil {
		o.chains = []map[string]any{mtlsChain("mtls", "inbound:backend", nil, nil)}
	}
	p := &pair{ca: ca, srv: newAgent(t), cli: newAgent(t)}
	p.srv.identity(o.serverLeaf, ca.PEM)
	p.srvAddr = p.srv.server(backend(t), o.chains...)
	p.cli.identity(o.clientLeaf, o.clientCA)
	p.entry = "http://" + p.cli.client(p.srvAddr, o.serverSAN)
	return p
}

func mustCA(t testing.TB, name string) *CA {
	t.Helper()
	ca, err := NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func TestMTLSEndToEnd(t *testing.T) {
	for _, kt := range []KeyType{ECDSA, RSA} {
		t.Run(kt.String(), func(t *testing.T) {
			ca := mustCA(t, "mesh")
			p := newPair(t, ca, pairOpts{
				serverLeaf: ca.MustIssue("spiffe://default/backend", time.Hour, kt),
				clientLeaf: ca.MustIssue("spiffe://default/web", time.Hour, kt),
			})
			st, xfcc, err := get(http.DefaultClient, p.entry+"/hello")
			if err != nil || st != 200 {
				t.Fatalf("GET through mTLS: %d %v; client logs:\n%s\nserver logs:\n%s", st, err, p.cli.logs, p.srv.logs)
			}
			if !strings.Contains(xfcc, "URI=spiffe://default/web") || !strings.HasPrefix(xfcc, "Hash=") {
				t.Fatalf("backend saw x-forwarded-client-cert %q, want Hash=...;URI=spiffe://default/web", xfcc)
			}
		})
	}
}

func TestMTLSRejections(t *testing.T) {
	ca := mustCA(t, "mesh")
	other := mustCA(t, "other")
	past := func(id string) *Leaf {
		l, err := ca.Issue(id, nil, time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour), ECDSA)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	cases := []struct {
		name string
		o    pairOpts
		// side whose log explains the refusal, and what it says.
		serverSide bool
		want       []string
	}{
		{"wrong server identity", pairOpts{serverSAN: "spiffe://default/payments"}, false,
			[]string{"mtls: server certificate rejected", "peer identity rejected", "spiffe://default/backend"}},
		{"expired client certificate", pairOpts{clientLeaf: past("spiffe://default/web")}, true,
			[]string{"mtls: client certificate rejected", "expired"}},
		{"expired server certificate", pairOpts{serverLeaf: past("spiffe://default/backend")}, false,
			[]string{"mtls: server certificate rejected", "expired"}},
		{"client from unknown CA", pairOpts{clientLeaf: other.MustIssue("spiffe://default/web", time.Hour, ECDSA)}, true,
			[]string{"mtls: client certificate rejected", "unknown authority"}},
		{"server from unknown CA", pairOpts{serverLeaf: other.MustIssue("spiffe://default/backend", time.Hour, ECDSA)}, false,
			[]string{"mtls: server certificate rejected", "unknown authority"}},
		{"client outside the mesh", pairOpts{clientLeaf: ca.MustIssue("spiffe://othermesh/web", time.Hour, ECDSA)}, true,
			[]string{"mtls: client certificate rejected", "peer identity rejected", "spiffe://othermesh/web"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := newPair(t, ca, tc.o)
			st, _, err := get(http.DefaultClient, p.entry+"/hello")
			if err == nil && st == 200 {
				t.Fatalf("request passed, want refusal")
			}
			logs := p.cli.logs
			if tc.serverSide {
				logs = p.srv.logs
			}
			line := logs.waitFor(t, tc.want...)
			refuser := p.cli
			if tc.serverSide {
				refuser = p.srv
			}
			if refuser.dp.TLSStats().PeerRejected.Load() == 0 {
				t.Fatal("refusal not counted in TLSStats().PeerRejected")
			}
			if strings.Contains(line, "PRIVATE KEY") {
				t.Fatalf("log line leaks key material: %s", line)
			}
		})
	}
}

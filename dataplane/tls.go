package dataplane

// TLS and mTLS of the data plane. Certificates, CAs and identities live in
// dataplane/mtls (a Manager shared by every snapshot, updated first in
// each build, read per handshake); authorization in plugins/rbac. This
// file is the glue: what a snapshot publishes to the Manager, the TLS
// configs of listeners and upstreams, and the per-connection security of a
// filter chain (STRICT/PERMISSIVE, TLS termination, peer identity, network
// and HTTP RBAC, x-forwarded-client-cert).

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshagent/meshagent/dataplane/mtls"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/plugins/rbac"
)

// sslCert records a server ssl object of the snapshot (its certificates
// are parsed and served by the mtls.Manager).
type sslCert struct {
	id   string
	snis []string
}

// parseSSL records a server ssl object; client ssls (workload
// certificates, SDS secrets) and disabled ones are not listed.
func parseSSL(id string, s *apisix.SSL) (*sslCert, error) {
	if s.Type == "client" || s.Status != nil && *s.Status == 0 {
		return nil, nil
	}
	c := &sslCert{id: id}
	if s.SNI != "" {
		c.snis = append(c.snis, strings.ToLower(s.SNI))
	}
	for _, n := range s.SNIs {
		c.snis = append(c.snis, strings.ToLower(n))
	}
	return c, nil
}

// updateTLS publishes the ssl objects and secrets of the build to the
// mTLS manager, before upstreams and listeners refer to them. Objects
// that fail keep their previous version (the manager logs them).
func (b *builder) updateTLS(s *snapshot) {
	s.tlsm = b.tlsm
	if b.tlsm == nil {
		return
	}
	ssls := make(map[string]*apisix.SSL, len(b.objs.ssls))
	for _, o := range b.objs.ssls {
		if v, ok := o.Value.(*apisix.SSL); ok {
			ssls[idOf(o.Key)] = v
		}
	}
	secrets := make(map[string]*apisix.Secret, len(b.objs.secrets))
	for _, o := range b.objs.secrets {
		if v, ok := o.Value.(*apisix.Secret); ok {
			secrets[idOf(o.Key)] = v
		}
	}
	for range b.tlsm.Update(ssls, secrets) {
		b.stats.ConfigRejected.Add(1)
	}
}

// tlsConfig is the server TLS config of the static HTTP listener: the
// server ssl objects by SNI (client certificates verified when the ssl
// has client.ca), ALPN h2 and http/1.1.
func (s *snapshot) tlsConfig() *tls.Config {
	return s.tlsm.SNIConfig(nil)
}

// chainTLS builds the TLS config of a listener filter chain (ssl_id or
// SDS secret_name; client CA and SAN rules; looked up per handshake).
func (s *snapshot) chainTLS(t *apisix.DownstreamTLS) (*tls.Config, error) {
	if s.tlsm == nil {
		return nil, errors.New("no certificate manager")
	}
	return s.tlsm.ServerConfig(t)
}

// setTLS builds the client TLS config of an upstream with TLS.
func (u *upstream) setTLS(a *apisix.Upstream, m *mtls.Manager) error {
	if !u.tls {
		return nil
	}
	if m == nil {
		m = mtls.NewManager(nil)
	}
	conf, err := m.ClientConfig(a.TLS)
	if err != nil {
		return fmt.Errorf("field \"tls\": %w", err)
	}
	u.tlsConf = conf
	return nil
}

// clientTLS returns a copy of the upstream's client TLS config.
func (u *upstream) clientTLS() *tls.Config {
	if u.tlsConf == nil {
		return &tls.Config{InsecureSkipVerify: true} //nolint:gosec // APISIX does not verify upstream certs by default.
	}
	return u.tlsConf.Clone()
}

// xfccHeader carries the peer's identity to the application (Envoy's
// forward_client_cert_details SANITIZE_SET: a client's own value is
// always removed on chains the data plane secures).
const xfccHeader = "X-Forwarded-Client-Cert"

// chainSec is the compiled security of a filter chain.
type chainSec struct {
	policy *rbac.Policy
	isTLS  bool
	table  string
	h1Once sync.Once
	h1     *fasthttp.Server // HTTP/1.1 with the per-request gate
}

// connInfo is what a secured connection carries for its requests.
type connInfo struct {
	attrs  rbac.Conn
	xfcc   string
	peerID string
	sec    *chainSec
}

// secConn is a connection of a secured filter chain.
type secConn struct {
	net.Conn
	info *connInfo
}

type connInfoKey struct{}

// connInfoOf finds the connInfo of a (possibly sniffed) connection.
func connInfoOf(c net.Conn) *connInfo {
	for range 3 {
		switch v := c.(type) {
		case *secConn:
			return v.info
		case *peekConn:
			c = v.Conn
		default:
			return nil
		}
	}
	return nil
}

// peerIdentity is the peer_identity variable: the mTLS peer's SPIFFE id.
func peerIdentity(c net.Conn) (string, bool) {
	if ci := connInfoOf(c); ci != nil && ci.peerID != "" {
		return ci.peerID, true
	}
	return "", false
}

// peerIdentityCtx is peer_identity for HTTP/2 requests.
func peerIdentityCtx(ctx context.Context) (string, bool) {
	if ci, ok := ctx.Value(connInfoKey{}).(*connInfo); ok && ci.peerID != "" {
		return ci.peerID, true
	}
	return "", false
}

// chainSecurity compiles the security of chain i: its rbac plugin (the
// xDS RBAC filters). Chains without TLS, RBAC or an inbound direction are
// served as before (nil).
func (s *snapshot) chainSecurity(f apisix.FilterChain, i int, inbound bool) (*chainSec, error) {
	var pol *rbac.Policy
	if raw, ok := f.Plugins[rbac.Name]; ok {
		p, err := rbac.Compile(raw)
		if err != nil {
			return nil, fieldErr("filter_chains", i, "plugins.rbac", err)
		}
		pol = p
	}
	if f.TLS == nil && pol == nil && !inbound {
		return nil, nil
	}
	return &chainSec{policy: pol, isTLS: f.TLS != nil, table: f.RouteConfig}, nil
}

// secureChain applies a chosen chain's transport security to c: a chain
// with TLS refuses plaintext (STRICT; PERMISSIVE listeners have a
// raw_buffer chain the plaintext connection matches instead), terminates
// TLS and records the peer identity; then the network RBAC filters run.
// It returns the connection to serve, or false when c was closed.
func (d *Dataplane) secureChain(lid string, c net.Conn, fc *filterChain, res sniffResult, dst netip.AddrPort) (net.Conn, bool) {
	if fc.tlsConf == nil && fc.sec == nil {
		return c, true
	}
	src := remoteAddrPort(c)
	info := &connInfo{sec: fc.sec}
	info.attrs = rbac.Conn{Source: src, DirectSource: src, Dest: dst, SNI: res.sni}
	if fc.tlsConf != nil {
		strict := func(detected string) {
			d.log.Warn("dataplane: plaintext connection refused: filter chain requires TLS (STRICT mTLS)",
				"listener", lid, "chain", fc.fc.Name, "src", src.String(), "detected", detected)
		}
		if res.proto == protoHTTP1 || res.proto == protoH2 {
			strict(res.proto.String())
			c.Close()
			return nil, false
		}
		// TLS, or opaque (not sniffed: an opaque port): try the handshake.
		tc := tls.Server(c, fc.tlsConf)
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			var rh tls.RecordHeaderError
			if errors.As(err, &rh) {
				strict("opaque")
			} else {
				d.log.Warn("dataplane: TLS handshake failed", "listener", lid, "chain", fc.fc.Name, "src", src.String(), "err", err)
			}
			tc.Close()
			return nil, false
		}
		_ = tc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		if len(st.PeerCertificates) > 0 {
			leaf := st.PeerCertificates[0]
			info.peerID = mtls.PeerIdentity(&st)
			info.attrs.Authenticated, info.attrs.Principal = true, mtls.Principal(leaf)
			sum := sha256.Sum256(leaf.Raw)
			info.xfcc = "Hash=" + hex.EncodeToString(sum[:])
			if info.peerID != "" {
				info.xfcc += ";URI=" + info.peerID
			}
		}
		c = tc
	}
	if fc.sec != nil && fc.sec.policy.HasNetwork() && !fc.sec.policy.AllowConn(&info.attrs) {
		d.log.Info("dataplane: connection denied by RBAC", "listener", lid, "chain", fc.fc.Name,
			"src", src.String(), "principal", info.attrs.Principal)
		c.Close()
		return nil, false
	}
	if fc.fc.Kind == "tcp" {
		return c, true // TCP proxying needs no per-request state; keep splice
	}
	return &secConn{Conn: c, info: info}, true
}

// serveSecured serves HTTP on a secured chain's connection: by ALPN
// (mesh values mapped by mtls.ProtocolOf) or by sniffing the (decrypted)
// bytes, with the chain's per-request gate.
func (d *Dataplane) serveSecured(c net.Conn, fc *filterChain, res sniffResult) {
	sc, ok := c.(*secConn)
	if !ok || fc.sec == nil {
		d.serveSniffed(c, fc.fc.RouteConfig, &res, false)
		return
	}
	p := res.proto
	if tc, isTLS := sc.Conn.(*tls.Conn); isTLS {
		switch mtls.ProtocolOf(tc.ConnectionState().NegotiatedProtocol) {
		case mtls.AppH2:
			p = protoH2
		case mtls.AppHTTP1:
			p = protoHTTP1
		default:
			pc, r := sniff(sc, d.opts.SniffTimeout)
			c, p = pc, r.proto
		}
	}
	switch p {
	case protoHTTP1:
		_ = d.chainH1(fc.sec).ServeConn(c)
	case protoH2:
		d.serveH2Secured(c, sc.info)
		_ = c.Close()
	default:
		c.Close()
	}
}

// chainH1 returns the chain's HTTP/1.1 server, built on first use.
func (d *Dataplane) chainH1(sec *chainSec) *fasthttp.Server {
	sec.h1Once.Do(func() {
		base := d.servers.get(sec.table, sec.isTLS)
		sec.h1 = &fasthttp.Server{
			Handler:                      func(fc *fasthttp.RequestCtx) { d.gateH1(fc, sec) },
			NoDefaultServerHeader:        base.NoDefaultServerHeader,
			NoDefaultContentType:         base.NoDefaultContentType,
			DisablePreParseMultipartForm: base.DisablePreParseMultipartForm,
			ReadBufferSize:               base.ReadBufferSize,
			MaxRequestBodySize:           base.MaxRequestBodySize,
			IdleTimeout:                  base.IdleTimeout,
			Logger:                       base.Logger,
		}
	})
	return sec.h1
}

// gateH1 sets x-forwarded-client-cert and applies the chain's HTTP RBAC
// before the normal request path.
func (d *Dataplane) gateH1(fc *fasthttp.RequestCtx, sec *chainSec) {
	h := &fc.Request.Header
	h.Del(xfccHeader)
	ci := connInfoOf(fc.Conn())
	if ci != nil && ci.xfcc != "" {
		h.Set(xfccHeader, ci.xfcc)
	}
	if sec.policy.HasHTTP() {
		var attrs rbac.Conn
		if ci != nil {
			attrs = ci.attrs
		}
		if !sec.policy.AllowRequest(&attrs, h1Headers{fc}) {
			d.stats.Requests.Add(1)
			fc.Response.SetStatusCode(403)
			fc.Response.Header.SetContentType("text/plain")
			fc.Response.SetBodyRaw(rbac.DeniedBody)
			return
		}
	}
	d.serveH1(fc, sec.table, sec.isTLS)
}

// h1Headers adapts a fasthttp request to rbac.Headers.
type h1Headers struct{ fc *fasthttp.RequestCtx }

func (h h1Headers) Header(name string) (string, bool) {
	r := &h.fc.Request.Header
	switch name {
	case ":method":
		return b2s(r.Method()), true
	case ":path":
		return b2s(r.RequestURI()), true
	case ":authority":
		return b2s(r.Host()), true
	}
	v := r.Peek(name)
	return b2s(v), v != nil
}

// serveH2Secured serves HTTP/2 with the chain's gate; the connInfo rides
// in the request context (peer_identity).
func (d *Dataplane) serveH2Secured(c net.Conn, ci *connInfo) {
	sec := ci.sec
	base := h2ConnContext(c) // carries the original destination (origdst.go)
	if base == nil {
		base = context.Background()
	}
	d.serveH2(c, context.WithValue(base, connInfoKey{}, ci), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { // h2server.go
		r.Header.Del(xfccHeader)
		if ci.xfcc != "" {
			r.Header.Set(xfccHeader, ci.xfcc)
		}
		if sec.policy.HasHTTP() && !sec.policy.AllowRequest(&ci.attrs, h2Headers{r}) {
			d.stats.Requests.Add(1)
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(403)
			_, _ = w.Write(rbac.DeniedBody)
			return
		}
		d.serveHTTP(w, r, sec.table, sec.isTLS)
	}))
}

// h2Headers adapts a net/http request to rbac.Headers.
type h2Headers struct{ r *http.Request }

func (h h2Headers) Header(name string) (string, bool) {
	switch name {
	case ":method":
		return h.r.Method, true
	case ":path":
		return h.r.URL.RequestURI(), true
	case ":authority":
		return h.r.Host, true
	}
	vs := h.r.Header.Values(name)
	if len(vs) == 0 {
		return "", false
	}
	return strings.Join(vs, ","), true
}

// dialUpstreamTLS runs the client handshake of a TCP upstream connection
// (mTLS origination for tcp_proxy clusters); uc is closed on failure.
func (d *Dataplane) dialUpstreamTLS(uc net.Conn, up *upstream) (net.Conn, error) {
	tc := tls.Client(uc, up.clientTLS())
	_ = tc.SetDeadline(time.Now().Add(up.to.connect))
	if err := tc.Handshake(); err != nil {
		d.log.Warn("dataplane: upstream TLS handshake failed", "upstream", up.id, "err", err)
		uc.Close()
		return nil, err
	}
	_ = tc.SetDeadline(time.Time{})
	return tc, nil
}

// tlsPeerConn carries the peer identity of a connection the static
// listener terminated (ssl objects with client.ca), for peer_identity.
func tlsPeerConn(tc *tls.Conn) net.Conn {
	st := tc.ConnectionState()
	id := mtls.PeerIdentity(&st)
	if id == "" {
		return tc
	}
	return &secConn{Conn: tc, info: &connInfo{peerID: id}}
}

// TLSStats returns the mTLS counters (material updates, rejected objects,
// refused peer certificates, handshakes without a certificate).
func (d *Dataplane) TLSStats() *mtls.Stats { return d.tlsm.Stats() }

package rbac

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"unsafe"

	"github.com/meshagent/meshagent/plugins"
)

// Name is the plugin name.
const Name = "rbac"

// Priority runs rbac in the access phase after authentication plugins
// (key-auth 2500, jwt-auth 2510) and before consumer-restriction (2400).
const Priority = 2450

// DeniedBody is the body of a refused request, as Envoy sends it.
var DeniedBody = []byte("RBAC: access denied")

func init() {
	plugins.Register(plugins.Plugin{Name: Name, Priority: Priority, New: newFilter})
}

// filter is the route-level rbac plugin. Connection attributes come from
// request variables: remote_addr/remote_port, server_addr/server_port and
// peer_identity (the mTLS peer's SPIFFE id, set by the data plane).
type filter struct{ p *Policy }

func newFilter(cfg json.RawMessage, _ plugins.Builder) (any, error) {
	p, err := Compile(cfg)
	if err != nil {
		return nil, err
	}
	return &filter{p: p}, nil
}

// Access implements plugins.Accessor: network- and http-stage filters are
// both evaluated per request; a refusal is a 403 "RBAC: access denied".
func (f *filter) Access(c plugins.Ctx) plugins.Status {
	var conn Conn
	ConnFromCtx(c, &conn)
	h := ctxHeaders{c}
	if !f.p.AllowConn(&conn) || !f.p.AllowRequest(&conn, h) {
		c.Respond(403, DeniedBody)
		return plugins.Stop
	}
	return plugins.Continue
}

// ConnFromCtx fills conn from a request's variables (remote_addr,
// remote_port, server_addr, server_port, peer_identity).
func ConnFromCtx(c plugins.Ctx, conn *Conn) {
	ra, _ := c.Var("remote_addr")
	rp, _ := c.Var("remote_port")
	sa, _ := c.Var("server_addr")
	sp, _ := c.Var("server_port")
	conn.DirectSource = addrPort(ra, rp)
	conn.Source = conn.DirectSource
	conn.Dest = addrPort(sa, sp)
	if id, ok := c.Var("peer_identity"); ok && id != "" {
		conn.Authenticated, conn.Principal = true, id
	}
}

func addrPort(a, p string) netip.AddrPort {
	ip, err := netip.ParseAddr(a)
	if err != nil {
		return netip.AddrPort{}
	}
	n, _ := strconv.Atoi(p)
	return netip.AddrPortFrom(ip.Unmap(), uint16(n))
}

// ctxHeaders adapts plugins.Ctx to Headers.
type ctxHeaders struct{ c plugins.Ctx }

func (h ctxHeaders) Header(name string) (string, bool) {
	switch name {
	case ":method":
		return b2s(h.c.Method()), true
	case ":path":
		if v, ok := h.c.Var("request_uri"); ok {
			return v, true
		}
		return b2s(h.c.Path()), true
	case ":authority":
		return b2s(h.c.Host()), true
	}
	v := h.c.Header(name)
	return b2s(v), v != nil
}

func b2s(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

var _ plugins.Accessor = (*filter)(nil)

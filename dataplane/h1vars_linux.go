//go:build linux

package dataplane

import (
	"bytes"
	"strconv"

	"github.com/meshagent/meshagent/dataplane/expr"
)

// evVars is the expr.Vars view of an exchange, for vars conditions and
// chash keys. A variable it cannot give exactly as the fasthttp engine
// would (percent-encoded arguments, quoted cookies) sets x.slow, and the
// request goes to that engine.
type evVars exchange

// Var implements expr.Vars.
func (v *evVars) Var(e expr.Var) (string, bool) {
	x := (*exchange)(v)
	h := &x.head
	c := x.c
	switch e.Kind {
	case expr.KindURI:
		return b2s(h.path), true
	case expr.KindHost:
		return b2s(x.host), true
	case expr.KindRequestMethod:
		return b2s(h.method), true
	case expr.KindRemoteAddr:
		return b2s(c.remote), true
	case expr.KindScheme:
		return "http", true
	case expr.KindRequestURI:
		return b2s(h.target), true
	case expr.KindQueryString:
		return b2s(h.query), len(h.query) > 0
	case expr.KindHeader:
		b, ok := h.header(e.Name)
		return b2s(b), ok
	case expr.KindArg:
		return x.arg(e.Name)
	case expr.KindCookie:
		return x.cookie(e.Name)
	case expr.KindServerPort:
		return b2s(c.localPort), true
	case expr.KindServerAddr:
		x.scratch = c.local.Addr().AppendTo(x.scratch[:0])
		return b2s(x.scratch), true
	case expr.KindRemotePort:
		x.scratch = strconv.AppendInt(x.scratch[:0], int64(c.remotePort), 10)
		return b2s(x.scratch), true
	case expr.KindOther:
		if e.Name == "http_host" {
			return b2s(h.host), true
		}
	}
	return "", false
}

// arg finds query argument name; encoded arguments go to fasthttp.
func (x *exchange) arg(name string) (string, bool) {
	q := x.head.query
	for len(q) > 0 {
		kv := q
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			kv, q = q[:i], q[i+1:]
		} else {
			q = nil
		}
		if bytes.IndexByte(kv, '%') >= 0 || bytes.IndexByte(kv, '+') >= 0 {
			x.slow = true
			return "", false
		}
		k, val, found := bytes.Cut(kv, []byte{'='})
		if string(k) == name {
			if !found {
				x.slow = true
				return "", false
			}
			return b2s(val), true
		}
	}
	return "", false
}

// cookie finds cookie name in the Cookie header.
func (x *exchange) cookie(name string) (string, bool) {
	ck := x.head.cookie
	for len(ck) > 0 {
		kv := ck
		if i := bytes.IndexByte(ck, ';'); i >= 0 {
			kv, ck = ck[:i], ck[i+1:]
		} else {
			ck = nil
		}
		kv = trimOWS(kv)
		k, val, _ := bytes.Cut(kv, []byte{'='})
		if string(trimOWS(k)) == name {
			if bytes.IndexByte(val, '"') >= 0 {
				x.slow = true
				return "", false
			}
			return b2s(trimOWS(val)), true
		}
	}
	return "", false
}

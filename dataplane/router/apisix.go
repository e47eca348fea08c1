package router

import (
	"fmt"

	"github.com/meshagent/meshagent/dataplane/expr"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// FromAPISIX builds a Route from an APISIX route object. svc is the route's
// service (nil when it has none or it is not found); when the route has no
// host/hosts its service's hosts become the effective hosts, as in
// radixtree_host_uri. Status 0 yields a Disabled route. The vars are
// compiled here; a route with filter_func (Lua) is rejected because the
// native data plane cannot run it.
func FromAPISIX[T any](r *apisix.Route, svc *apisix.Service, value T) (Route[T], error) {
	rt := Route[T]{ID: string(r.ID), Priority: r.Priority, Methods: r.Methods, Value: value}
	switch {
	case len(r.URIs) > 0:
		rt.URIs = r.URIs
	case r.URI != "":
		rt.URIs = []string{r.URI}
	}
	switch {
	case len(r.Hosts) > 0:
		rt.Hosts = r.Hosts
	case r.Host != "":
		rt.Hosts = []string{r.Host}
	case svc != nil && len(svc.Hosts) > 0:
		rt.Hosts = svc.Hosts
	}
	switch {
	case len(r.RemoteAddrs) > 0:
		rt.RemoteAddrs = r.RemoteAddrs
	case r.RemoteAddr != "":
		rt.RemoteAddrs = []string{r.RemoteAddr}
	}
	if r.Status != nil && *r.Status == 0 {
		rt.Disabled = true
	}
	if r.FilterFunc != "" {
		return Route[T]{}, fmt.Errorf("%w %q: filter_func: Lua functions are not supported by the native data plane", ErrInvalidRoute, rt.ID)
	}
	if len(r.Vars) > 0 {
		e, err := expr.Compile(r.Vars)
		if err != nil {
			return Route[T]{}, fmt.Errorf("%w %q: vars: %w", ErrInvalidRoute, rt.ID, err)
		}
		rt.Vars = e
	}
	if err := rt.prepare(0); err != nil {
		return Route[T]{}, err
	}
	return rt, nil
}

package translate

import (
	"fmt"
	"math"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
)

const faultFilter = "envoy.filters.http.fault"

// faultConfig returns the HTTPFault a route is subject to: its own
// typed_per_filter_config, else its virtual host's.
func faultConfig(vh *routev3.VirtualHost, rt *routev3.Route) *anypb.Any {
	if a, ok := rt.GetTypedPerFilterConfig()[faultFilter]; ok {
		return a
	}
	return vh.GetTypedPerFilterConfig()[faultFilter]
}

// percent converts a fractional percent to fault-injection's 1..100.
func percent(r *unitResult, p *typev3.FractionalPercent) (int, bool) {
	if p == nil {
		return 100, true
	}
	f := fractionOf(p.GetNumerator(), p.GetDenominator().String()) * 100
	if f <= 0 {
		return 0, false
	}
	n := int(math.Round(f))
	if n < 1 {
		n = 1
	}
	if float64(n) != f {
		r.warnf("fault percentage %.4g%% rounded to %d%%", f, n)
	}
	return n, true
}

// faultPlugin translates Envoy's HTTPFault (Istio's VirtualService fault
// injection) into APISIX's fault-injection plugin; nil when it injects
// nothing.
func faultPlugin(r *unitResult, a *anypb.Any) (map[string]any, error) {
	var f faultv3.HTTPFault
	if err := a.UnmarshalTo(&f); err != nil {
		return nil, fmt.Errorf("typed_per_filter_config[%s]: %v", faultFilter, err)
	}
	var vars []any
	for i, h := range f.GetHeaders() {
		e, err := headerMatch(h)
		if err != nil {
			return nil, fmt.Errorf("typed_per_filter_config[%s].headers[%d]: %v", faultFilter, i, err)
		}
		for _, x := range e {
			vars = append(vars, x)
		}
	}
	if len(f.GetDownstreamNodes()) > 0 || f.GetUpstreamCluster() != "" {
		r.warnf("fault: downstream_nodes / upstream_cluster conditions ignored")
	}
	out := map[string]any{}
	if ab := f.GetAbort(); ab != nil {
		switch {
		case ab.GetHttpStatus() != 0:
			if ab.GetHttpStatus() < 200 || ab.GetHttpStatus() > 599 {
				return nil, fmt.Errorf("typed_per_filter_config[%s].abort.http_status: %d is outside 200..599", faultFilter, ab.GetHttpStatus())
			}
			if p, ok := percent(r, ab.GetPercentage()); ok {
				abort := map[string]any{"http_status": ab.GetHttpStatus(), "percentage": p}
				if ab.GetResponseBody() != "" {
					abort["body"] = ab.GetResponseBody()
				}
				if len(vars) > 0 {
					abort["vars"] = []any{vars}
				}
				out["abort"] = abort
			}
		default:
			r.warnf("fault: gRPC or header-driven aborts ignored")
		}
	}
	if d := f.GetDelay(); d != nil {
		if fd := d.GetFixedDelay(); fd != nil && seconds(fd) > 0 {
			if p, ok := percent(r, d.GetPercentage()); ok {
				delay := map[string]any{"duration": seconds(fd), "percentage": p}
				if len(vars) > 0 {
					delay["vars"] = []any{vars}
				}
				out["delay"] = delay
			}
		} else {
			r.warnf("fault: header-driven delays ignored")
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

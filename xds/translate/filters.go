package translate

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	corsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/cors/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	lrlv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/local_ratelimit/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	corsFilter      = "envoy.filters.http.cors"
	localRateFilter = "envoy.filters.http.local_ratelimit"
)

// perFilter returns the typed_per_filter_config of filter for a route:
// the route's own, else its virtual host's.
func perFilter(vh *routev3.VirtualHost, rt *routev3.Route, filter string) *anypb.Any {
	if a, ok := rt.GetTypedPerFilterConfig()[filter]; ok {
		return a
	}
	return vh.GetTypedPerFilterConfig()[filter]
}

// corsPolicy is what both CorsPolicy messages (route's deprecated one and
// the cors filter's) offer.
type corsPolicy interface {
	GetAllowOriginStringMatch() []*matcherv3.StringMatcher
	GetAllowMethods() string
	GetAllowHeaders() string
	GetExposeHeaders() string
	GetMaxAge() string
	GetAllowCredentials() *wrapperspb.BoolValue
	GetFilterEnabled() *corev3.RuntimeFractionalPercent
}

// routeCORS finds the CORS policy of a route: typed_per_filter_config of
// the route, of the virtual host, then the deprecated fields.
func routeCORS(vh *routev3.VirtualHost, rt *routev3.Route) (corsPolicy, error) {
	if a := perFilter(vh, rt, corsFilter); a != nil {
		var p corsv3.CorsPolicy
		if err := a.UnmarshalTo(&p); err != nil {
			return nil, fmt.Errorf("typed_per_filter_config[%s]: %v", corsFilter, err)
		}
		return &p, nil
	}
	if p := rt.GetRoute().GetCors(); p != nil {
		return p, nil
	}
	if p := vh.GetCors(); p != nil {
		return p, nil
	}
	return nil, nil
}

// corsPlugin translates a CORS policy into APISIX's cors plugin; nil when
// the policy is disabled.
func corsPlugin(p corsPolicy) (map[string]any, error) {
	if fe := p.GetFilterEnabled(); fe != nil && fe.GetDefaultValue() != nil && fe.GetDefaultValue().GetNumerator() == 0 {
		return nil, nil
	}
	var exact, regexes []string
	anyOrigin := false
	for i, m := range p.GetAllowOriginStringMatch() {
		switch {
		case m.GetExact() == "*":
			anyOrigin = true
		case m.GetExact() != "" && !m.GetIgnoreCase():
			exact = append(exact, m.GetExact())
		default:
			_, val, _, err := stringMatch(m)
			if err != nil {
				return nil, fmt.Errorf("allow_origin_string_match[%d]: %v", i, err)
			}
			if m.GetIgnoreCase() {
				val = "(?i)" + val
			}
			if _, err := regexp.Compile(val); err != nil {
				return nil, fmt.Errorf("allow_origin_string_match[%d]: %v", i, err)
			}
			regexes = append(regexes, val)
		}
	}
	cred := p.GetAllowCredentials().GetValue()
	out := map[string]any{}
	switch {
	case anyOrigin && cred:
		out["allow_origins"] = "**" // echo the origin, as Envoy does
	case anyOrigin:
		out["allow_origins"] = "*"
	case len(exact) > 0:
		out["allow_origins"] = strings.Join(exact, ",")
	default:
		// Only patterns (or nothing) allowed: no literal origin matches "-".
		out["allow_origins"] = "-"
	}
	if len(regexes) > 0 && !anyOrigin {
		out["allow_origins_by_regex"] = regexes
	}
	if cred {
		out["allow_credential"] = true
	}
	for k, v := range map[string]string{"allow_methods": p.GetAllowMethods(), "allow_headers": p.GetAllowHeaders(), "expose_headers": p.GetExposeHeaders()} {
		if v == "" {
			continue
		}
		if v == "*" && cred {
			v = "**"
		}
		out[k] = v
	}
	if _, ok := out["allow_methods"]; !ok {
		out["allow_methods"] = "*"
		if cred {
			out["allow_methods"] = "**"
		}
	}
	if _, ok := out["allow_headers"]; !ok {
		out["allow_headers"] = "*"
		if cred {
			out["allow_headers"] = "**"
		}
	}
	if ma := p.GetMaxAge(); ma != "" {
		n, err := strconv.Atoi(ma)
		if err != nil {
			return nil, fmt.Errorf("max_age %q: must be an integer", ma)
		}
		out["max_age"] = n
	}
	return out, nil
}

// rateLimitPlugin translates Envoy's local_ratelimit (per route) into
// limit-req: the token bucket refills tokens_per_fill every fill_interval
// (rate) and holds max_tokens (burst); one bucket per listener address,
// answered 429 (or the configured status) when empty.
func rateLimitPlugin(r *unitResult, a *anypb.Any) (map[string]any, error) {
	var l lrlv3.LocalRateLimit
	if err := a.UnmarshalTo(&l); err != nil {
		return nil, fmt.Errorf("typed_per_filter_config[%s]: %v", localRateFilter, err)
	}
	full := func(p *corev3.RuntimeFractionalPercent) bool {
		return p != nil && fractionOf(p.GetDefaultValue().GetNumerator(), p.GetDefaultValue().GetDenominator().String()) >= 1
	}
	// Envoy enforces nothing unless both fractions are set.
	if !full(l.GetFilterEnabled()) || !full(l.GetFilterEnforced()) {
		if l.GetFilterEnabled() != nil || l.GetFilterEnforced() != nil {
			r.warnf("local_ratelimit: partial filter_enabled/filter_enforced treated as not enforced")
		}
		return nil, nil
	}
	if len(l.GetDescriptors()) > 0 {
		return nil, fmt.Errorf("typed_per_filter_config[%s].descriptors: not supported", localRateFilter)
	}
	tb := l.GetTokenBucket()
	fill := seconds(tb.GetFillInterval())
	if tb == nil || fill <= 0 || tb.GetMaxTokens() == 0 {
		return nil, fmt.Errorf("typed_per_filter_config[%s].token_bucket: max_tokens and fill_interval are required", localRateFilter)
	}
	perFill := uint32(1)
	if tb.GetTokensPerFill() != nil {
		perFill = tb.GetTokensPerFill().GetValue()
	}
	code := 429
	if s := l.GetStatus(); s != nil && s.GetCode() != 0 {
		code = int(s.GetCode())
	}
	return map[string]any{
		"rate":          float64(perFill) / fill,
		"burst":         float64(tb.GetMaxTokens()),
		"key":           "server_addr",
		"rejected_code": code,
		"nodelay":       true,
	}, nil
}

// emptyFilterLevel reports whether an HCM-level fault or local_ratelimit
// filter only enables per-route configs (no abort, delay or bucket).
func emptyFilterLevel(a *anypb.Any) bool {
	switch a.GetTypeUrl() {
	case typeFault:
		var f faultv3.HTTPFault
		return a.UnmarshalTo(&f) == nil && f.GetAbort() == nil && f.GetDelay() == nil
	case typeLocalRate:
		var l lrlv3.LocalRateLimit
		return a.UnmarshalTo(&l) == nil && l.GetTokenBucket() == nil
	}
	return false
}

package translate

import (
	"encoding/json"
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// defaultRouteTimeout is Envoy's route timeout when none is set.
const defaultRouteTimeout = 15.0

func (t *Translator) translateRouteConfig(r *unitResult, name string, e *entry) error {
	rc := e.msg.(*routev3.RouteConfiguration)
	if rc.GetName() != name {
		return fmt.Errorf("%w: route_configuration %q: name: resource name %q differs", ErrInvalid, name, rc.GetName())
	}
	return t.translateRoutes(r, rc, name, name, e.version)
}

// translateRoutes writes the routes of rc as route table table.
func (t *Translator) translateRoutes(r *unitResult, rc *routev3.RouteConfiguration, table, resName, version string) error {
	for vi, vh := range rc.GetVirtualHosts() {
		hosts, err := hostsOf(vh.GetDomains())
		if err != nil {
			return fmt.Errorf("%w: route_configuration %q: virtual_hosts[%d] (%s): %v", ErrInvalid, rc.GetName(), vi, vh.GetName(), err)
		}
		if vh.GetRequireTls() != routev3.VirtualHost_NONE {
			return fmt.Errorf("%w: route_configuration %q: virtual_hosts[%d] (%s): require_tls is not supported", ErrInvalid, rc.GetName(), vi, vh.GetName())
		}
		n := len(vh.GetRoutes())
		matches := make([]*match, n)
		for ri, rt := range vh.GetRoutes() {
			if matches[ri], err = translateMatch(rt.GetMatch()); err != nil {
				return fmt.Errorf("%w: route_configuration %q: virtual_hosts[%d] (%s): routes[%d] (%s): %v", ErrInvalid, rc.GetName(), vi, vh.GetName(), ri, rt.GetName(), err)
			}
		}
		if reordered(matches) {
			// APISIX would prefer a later, more specific path over an
			// earlier one: keep Envoy's first-match order instead.
			for _, m := range matches {
				m.ordered()
			}
		}
		for ri, rt := range vh.GetRoutes() {
			route, err := t.translateRoute(r, rc, vh, rt, matches[ri])
			if err != nil {
				return fmt.Errorf("%w: route_configuration %q: virtual_hosts[%d] (%s): routes[%d] (%s): %v", ErrInvalid, rc.GetName(), vi, vh.GetName(), ri, rt.GetName(), err)
			}
			id := ObjectID(table + "/" + vh.GetName() + "/" + strconv.Itoa(ri))
			route.Hosts = hosts
			route.Priority = n - ri
			route.Labels = labels(resName, version)
			route.Labels[apisix.LabelRouteConfig] = labelValue(table)
			rn := vh.GetName() + "/" + rt.GetName()
			if rt.GetName() == "" {
				rn = vh.GetName() + "/" + strconv.Itoa(ri)
			}
			if len(rn) > 256 {
				rn = rn[:256]
			}
			route.Name = rn
			if err := r.put(PrefixRoutes+id, route); err != nil {
				return err
			}
		}
		if len(hosts) > 0 && !hasCatchAll(matches) {
			// Envoy answers 404 when the virtual host chosen by the Host
			// header has no matching route; APISIX would fall back to the
			// host-less routes (another virtual host). Close the host.
			nf := &apisix.Route{
				Name: vh.GetName() + "/no-route", URI: "/*", Hosts: hosts, Labels: labels(resName, version),
				Plugins: apisix.Plugins{"fault-injection": rawPlugin(map[string]any{"abort": map[string]any{"http_status": 404}})},
			}
			nf.Labels[apisix.LabelRouteConfig] = labelValue(table)
			if err := r.put(PrefixRoutes+ObjectID(table+"/"+vh.GetName()+"/no-route"), nf); err != nil {
				return err
			}
		}
	}
	return nil
}

// hasCatchAll reports whether a route matches every path unconditionally.
func hasCatchAll(ms []*match) bool {
	for _, m := range ms {
		if len(m.vars) == 0 && len(m.methods) == 0 && len(m.uris) == 1 && m.uris[0] == "/*" {
			return true
		}
	}
	return false
}

func rawPlugin(v any) json.RawMessage {
	b, _ := json.Marshal(v) // plugin configs are maps of plain values
	return b
}

func (t *Translator) translateRoute(r *unitResult, rc *routev3.RouteConfiguration, vh *routev3.VirtualHost, rt *routev3.Route, m *match) (*apisix.Route, error) {
	out := &apisix.Route{Plugins: apisix.Plugins{}}
	if len(m.uris) == 1 {
		out.URI = m.uris[0]
	} else {
		out.URIs = m.uris
	}
	out.Methods = m.methods
	if len(m.vars) > 0 {
		b, err := json.Marshal(m.vars)
		if err != nil {
			return nil, fmt.Errorf("vars: %v", err)
		}
		out.Vars = b
	}
	for k := range rt.GetTypedPerFilterConfig() {
		switch k {
		case "envoy.filters.http.rbac", "envoy.filters.http.ext_authz", "envoy.filters.http.jwt_authn":
			return nil, fmt.Errorf("typed_per_filter_config[%s] is not supported", k)
		case faultFilter, corsFilter, localRateFilter:
			continue
		}
		r.warnf("route %q: typed_per_filter_config[%s] ignored", rt.GetName(), k)
	}
	if cp, err := routeCORS(vh, rt); err != nil {
		return nil, err
	} else if cp != nil {
		c, err := corsPlugin(cp)
		if err != nil {
			return nil, fmt.Errorf("cors: %v", err)
		}
		if c != nil {
			out.Plugins["cors"] = rawPlugin(c)
		}
	}
	if la := perFilter(vh, rt, localRateFilter); la != nil {
		lp, err := rateLimitPlugin(r, la)
		if err != nil {
			return nil, err
		}
		if lp != nil {
			out.Plugins["limit-req"] = rawPlugin(lp)
		}
	}
	if fa := faultConfig(vh, rt); fa != nil && rt.GetRoute() != nil {
		fp, err := faultPlugin(r, fa)
		if err != nil {
			return nil, err
		}
		if fp != nil {
			out.Plugins["fault-injection"] = rawPlugin(fp)
		}
	}
	switch a := rt.GetAction().(type) {
	case *routev3.Route_Route:
		if err := t.routeAction(r, out, m, a.Route); err != nil {
			return nil, err
		}
	case *routev3.Route_Redirect:
		p, err := redirectPlugin(m, a.Redirect)
		if err != nil {
			return nil, fmt.Errorf("redirect: %v", err)
		}
		out.Plugins["redirect"] = rawPlugin(p)
	case *routev3.Route_DirectResponse:
		st := int(a.DirectResponse.GetStatus())
		if st < 200 || st > 599 {
			return nil, fmt.Errorf("direct_response.status: %d is outside 200..599", st)
		}
		abort := map[string]any{"http_status": st}
		if b := a.DirectResponse.GetBody(); b != nil {
			body, err := dataSource(b)
			if err != nil {
				return nil, fmt.Errorf("direct_response.body: %v", err)
			}
			if body != "" {
				abort["body"] = body
			}
		}
		out.Plugins["fault-injection"] = rawPlugin(map[string]any{"abort": abort})
	default:
		return nil, fmt.Errorf("action %T is not supported", a)
	}
	if err := headerPlugins(r, out, rc, vh, rt); err != nil {
		return nil, err
	}
	if len(out.Plugins) == 0 {
		out.Plugins = nil
	}
	return out, nil
}

func (t *Translator) routeAction(r *unitResult, out *apisix.Route, m *match, a *routev3.RouteAction) error {
	var v variant
	if rp := a.GetRetryPolicy(); rp != nil {
		n := 1
		if rp.GetNumRetries() != nil {
			n = int(rp.GetNumRetries().GetValue())
		}
		v.Retries = &n
	}
	if hp := a.GetHashPolicy(); len(hp) > 0 {
		on, key, err := hashKey(hp[0])
		if err != nil {
			return fmt.Errorf("route.hash_policy[0]: %v", err)
		}
		v.HashOn, v.Key = on, key
		if len(hp) > 1 {
			r.warnf("route: only the first of %d hash_policy entries is used", len(hp))
		}
	}
	use := func(cluster string) string {
		if !v.isZero() {
			r.variants = append(r.variants, variantRef{cluster: cluster, variant: v.encode()})
		}
		return variantUpstreamID(cluster, v)
	}
	switch cs := a.GetClusterSpecifier().(type) {
	case *routev3.RouteAction_Cluster:
		if cs.Cluster == "" {
			return fmt.Errorf("route.cluster: empty")
		}
		out.UpstreamID = apisix.ID(use(cs.Cluster))
	case *routev3.RouteAction_WeightedClusters:
		var ups []map[string]any
		for i, wc := range cs.WeightedClusters.GetClusters() {
			if wc.GetName() == "" {
				return fmt.Errorf("route.weighted_clusters.clusters[%d]: only name is supported", i)
			}
			w := 1
			if wc.GetWeight() != nil {
				w = int(wc.GetWeight().GetValue())
			}
			if len(wc.GetRequestHeadersToAdd())+len(wc.GetRequestHeadersToRemove())+len(wc.GetResponseHeadersToAdd())+len(wc.GetResponseHeadersToRemove()) > 0 {
				r.warnf("route: weighted_clusters[%d] (%s) header changes ignored", i, wc.GetName())
			}
			id := use(wc.GetName())
			if out.UpstreamID == "" && w > 0 {
				out.UpstreamID = apisix.ID(id)
			}
			ups = append(ups, map[string]any{"upstream_id": id, "weight": w})
		}
		if len(ups) == 0 || out.UpstreamID == "" {
			return fmt.Errorf("route.weighted_clusters: no cluster with a weight > 0")
		}
		if len(ups) > 20 {
			return fmt.Errorf("route.weighted_clusters: %d clusters, at most 20 are supported", len(ups))
		}
		out.Plugins["traffic-split"] = rawPlugin(map[string]any{
			"rules": []any{map[string]any{"weighted_upstreams": ups}},
		})
	default:
		return fmt.Errorf("route: cluster specifier %T is not supported", cs)
	}
	// Timeout: unset is Envoy's 15 s, zero disables it.
	to := defaultRouteTimeout
	if a.GetTimeout() != nil {
		to = seconds(a.GetTimeout())
	}
	if to > 0 {
		out.Timeout = &apisix.Timeout{Connect: to, Send: to, Read: to}
	}
	rw := map[string]any{}
	switch {
	case a.GetPrefixRewrite() != "":
		nr := a.GetPrefixRewrite()
		if strings.Contains(nr, "$") {
			return fmt.Errorf("route.prefix_rewrite: '$' is not supported")
		}
		switch m.kind {
		case "path":
			rw["uri"] = nr
		case "prefix", "separated":
			flag := ""
			if m.caseIns {
				flag = "(?i)"
			}
			rw["regex_uri"] = []string{flag + "^" + regexp.QuoteMeta(m.prefix) + "(.*)", nr + "$1"}
		default:
			return fmt.Errorf("route.prefix_rewrite: needs a prefix or path match")
		}
	case a.GetRegexRewrite() != nil:
		re := a.GetRegexRewrite().GetPattern().GetRegex()
		if _, err := regexp.Compile(re); err != nil {
			return fmt.Errorf("route.regex_rewrite.pattern: %v", err)
		}
		sub := regexp.MustCompile(`\\([0-9])`).ReplaceAllString(a.GetRegexRewrite().GetSubstitution(), "$$$1")
		rw["regex_uri"] = []string{re, sub}
	case a.GetPathRewritePolicy() != nil:
		return fmt.Errorf("route.path_rewrite_policy is not supported")
	}
	switch h := a.GetHostRewriteSpecifier().(type) {
	case *routev3.RouteAction_HostRewriteLiteral:
		rw["host"] = h.HostRewriteLiteral
	case *routev3.RouteAction_AutoHostRewrite:
		if h.AutoHostRewrite.GetValue() {
			r.warnf("route: auto_host_rewrite ignored (the client Host is passed)")
		}
	case nil:
	default:
		r.warnf("route: host rewrite %T ignored", h)
	}
	if len(rw) > 0 {
		out.Plugins["proxy-rewrite"] = rawPlugin(rw)
	}
	if mp := a.GetRequestMirrorPolicies(); len(mp) > 0 {
		if len(mp) > 1 {
			r.warnf("route: only the first of %d request_mirror_policies is used", len(mp))
		}
		if host, ok := t.mirrorHost(r, mp[0].GetCluster()); ok {
			cfg := map[string]any{"host": host}
			if f := mp[0].GetRuntimeFraction().GetDefaultValue(); f != nil {
				cfg["sample_ratio"] = fractionOf(f.GetNumerator(), f.GetDenominator().String())
			}
			out.Plugins["proxy-mirror"] = rawPlugin(cfg)
		} else {
			r.warnf("route: mirror cluster %q has no endpoint yet; mirroring off", mp[0].GetCluster())
		}
	}
	return nil
}

func fractionOf(num uint32, denom string) float64 {
	d := 100.0
	switch denom {
	case "TEN_THOUSAND":
		d = 10000
	case "MILLION":
		d = 1000000
	}
	f := float64(num) / d
	if f > 1 {
		f = 1
	}
	return f
}

// mirrorHost resolves the first endpoint of a mirror cluster; the route
// is re-translated when that cluster or its endpoints change.
func (t *Translator) mirrorHost(r *unitResult, cluster string) (string, bool) {
	r.deps = append(r.deps, resKey{KindCluster, cluster})
	ce := t.res[KindCluster][cluster]
	if ce == nil {
		return "", false
	}
	c := ce.msg.(*clusterv3.Cluster)
	cla := c.GetLoadAssignment()
	if c.GetType() == clusterv3.Cluster_EDS {
		r.deps = append(r.deps, resKey{KindEndpoints, edsName(c)})
		ee := t.res[KindEndpoints][edsName(c)]
		if ee == nil {
			return "", false
		}
		cla = ee.msg.(*endpointv3.ClusterLoadAssignment)
	}
	for _, le := range cla.GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			if host, port, err := socketAddr(lb.GetEndpoint().GetAddress()); err == nil {
				return "http://" + host + ":" + formatPort(port), true
			}
		}
	}
	return "", false
}

func hashKey(h *routev3.RouteAction_HashPolicy) (on, key string, err error) {
	switch p := h.GetPolicySpecifier().(type) {
	case *routev3.RouteAction_HashPolicy_Header_:
		return "header", p.Header.GetHeaderName(), nil
	case *routev3.RouteAction_HashPolicy_Cookie_:
		return "cookie", p.Cookie.GetName(), nil
	case *routev3.RouteAction_HashPolicy_ConnectionProperties_:
		return "vars", "remote_addr", nil
	case *routev3.RouteAction_HashPolicy_QueryParameter_:
		return "vars", "arg_" + p.QueryParameter.GetName(), nil
	}
	return "", "", fmt.Errorf("policy %T is not supported", h.GetPolicySpecifier())
}

var redirectCodes = map[routev3.RedirectAction_RedirectResponseCode]int{
	routev3.RedirectAction_MOVED_PERMANENTLY:  301,
	routev3.RedirectAction_FOUND:              302,
	routev3.RedirectAction_SEE_OTHER:          303,
	routev3.RedirectAction_TEMPORARY_REDIRECT: 307,
	routev3.RedirectAction_PERMANENT_REDIRECT: 308,
}

func redirectPlugin(m *match, rd *routev3.RedirectAction) (map[string]any, error) {
	out := map[string]any{"ret_code": redirectCodes[rd.GetResponseCode()]}
	base := ""
	scheme := rd.GetSchemeRedirect()
	if rd.GetHttpsRedirect() {
		scheme = "https"
	}
	if scheme != "" || rd.GetHostRedirect() != "" || rd.GetPortRedirect() != 0 {
		if scheme == "" {
			scheme = "$scheme"
		}
		host := rd.GetHostRedirect()
		if host == "" {
			host = "$host"
		}
		base = scheme + "://" + host
		if p := rd.GetPortRedirect(); p != 0 {
			base += ":" + strconv.Itoa(int(p))
		}
	}
	appendQuery := !rd.GetStripQuery()
	switch {
	case rd.GetPathRedirect() != "":
		out["uri"] = base + rd.GetPathRedirect()
		if strings.Contains(rd.GetPathRedirect(), "?") {
			appendQuery = false
		}
	case rd.GetPrefixRewrite() != "":
		if m.kind != "prefix" && m.kind != "separated" {
			return nil, fmt.Errorf("prefix_rewrite needs a prefix match")
		}
		out["regex_uri"] = []string{"^" + regexp.QuoteMeta(m.prefix) + "(.*)", base + rd.GetPrefixRewrite() + "$1"}
	case rd.GetRegexRewrite() != nil:
		return nil, fmt.Errorf("regex_rewrite is not supported")
	default:
		out["uri"] = base + "$uri"
	}
	if appendQuery {
		out["append_query_string"] = true
	}
	return out, nil
}

type headerOps struct {
	add, set map[string]string
	remove   []string
}

func (h *headerOps) apply(r *unitResult, opts []*corev3.HeaderValueOption, remove []string) {
	for _, o := range opts {
		k, v := o.GetHeader().GetKey(), o.GetHeader().GetValue()
		if strings.HasPrefix(k, ":") {
			r.warnf("header %q: pseudo headers cannot be added", k)
			continue
		}
		if strings.Contains(v, "%") {
			r.warnf("header %q: Envoy command operators in %q are kept literally", k, v)
		}
		appendIt := o.GetAppendAction() == corev3.HeaderValueOption_APPEND_IF_EXISTS_OR_ADD
		if o.GetAppend() != nil {
			appendIt = o.GetAppend().GetValue()
		}
		switch o.GetAppendAction() {
		case corev3.HeaderValueOption_ADD_IF_ABSENT, corev3.HeaderValueOption_OVERWRITE_IF_EXISTS:
			r.warnf("header %q: append_action %v applied as overwrite", k, o.GetAppendAction())
			appendIt = false
		}
		if appendIt {
			h.add[k] = v
		} else {
			h.set[k] = v
		}
	}
	h.remove = append(h.remove, remove...)
}

func (h *headerOps) plugin() map[string]any {
	out := map[string]any{}
	if len(h.add) > 0 {
		out["add"] = h.add
	}
	if len(h.set) > 0 {
		out["set"] = h.set
	}
	if len(h.remove) > 0 {
		sort.Strings(h.remove)
		out["remove"] = compact(h.remove)
	}
	return out
}

func compact(s []string) []string {
	out := s[:0]
	for i, v := range s {
		if i == 0 || v != s[i-1] {
			out = append(out, v)
		}
	}
	return out
}

// headerPlugins merges route, virtual host and route configuration header
// changes (most specific first, as Envoy applies them) into proxy-rewrite
// and response-rewrite.
func headerPlugins(r *unitResult, out *apisix.Route, rc *routev3.RouteConfiguration, vh *routev3.VirtualHost, rt *routev3.Route) error {
	req := headerOps{add: map[string]string{}, set: map[string]string{}}
	req.apply(r, rt.GetRequestHeadersToAdd(), rt.GetRequestHeadersToRemove())
	req.apply(r, vh.GetRequestHeadersToAdd(), vh.GetRequestHeadersToRemove())
	req.apply(r, rc.GetRequestHeadersToAdd(), rc.GetRequestHeadersToRemove())
	if hp := req.plugin(); len(hp) > 0 {
		pr := map[string]any{}
		if raw, ok := out.Plugins["proxy-rewrite"]; ok {
			if err := json.Unmarshal(raw, &pr); err != nil {
				return err
			}
		}
		pr["headers"] = hp
		out.Plugins["proxy-rewrite"] = rawPlugin(pr)
	}
	resp := headerOps{add: map[string]string{}, set: map[string]string{}}
	resp.apply(r, rt.GetResponseHeadersToAdd(), rt.GetResponseHeadersToRemove())
	resp.apply(r, vh.GetResponseHeadersToAdd(), vh.GetResponseHeadersToRemove())
	resp.apply(r, rc.GetResponseHeadersToAdd(), rc.GetResponseHeadersToRemove())
	if hp := resp.plugin(); len(hp) > 0 {
		out.Plugins["response-rewrite"] = rawPlugin(map[string]any{"headers": hp})
	}
	return nil
}

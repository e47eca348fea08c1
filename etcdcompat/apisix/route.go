package apisix

import "strings"

// httpMethods is schema_def.lua method_schema.
var httpMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"}

func (t *Timeout) check(path string, present fieldSet) error {
	for _, f := range []struct {
		name string
		v    float64
	}{{"connect", t.Connect}, {"send", t.Send}, {"read", t.Read}} {
		if !present.has(f.name) {
			return fieldErr(path, f.name, "is required")
		}
		if !(f.v > 0) {
			return fieldErr(path, f.name, "must be > 0")
		}
	}
	return nil
}

// check applies schema_def.lua route and admin/routes.lua check_conf.
func (r *Route) check(path string, p fieldSet) error {
	if err := checkMeta(path, p, r.Name, r.Desc, r.Labels); err != nil {
		return err
	}
	switch {
	case p.has("uri") && p.has("uris"):
		return fieldErr(path, "uris", "only one of uri or uris is allowed")
	case p.has("uri"):
		if err := checkStrLen(joinPath(path, "uri"), r.URI, 1, 4096); err != nil {
			return err
		}
	case p.has("uris"):
		if len(r.URIs) == 0 {
			return fieldErr(path, "uris", "must have at least 1 item")
		}
		if i := firstDup(r.URIs); i >= 0 {
			return &FieldError{Path: indexPath(joinPath(path, "uris"), i), Rule: "duplicate item"}
		}
	default:
		return fieldErr(path, "uri", "is required (uri or uris)")
	}
	if !p.has("plugins") && !p.has("upstream") && !p.has("upstream_id") && !p.has("service_id") && !p.has("script") {
		return fieldErr(path, "upstream", "one of plugins, upstream, upstream_id, service_id or script is required")
	}
	if p.has("script") && p.has("plugins") {
		return fieldErr(path, "script", "script and plugins are mutually exclusive")
	}
	if p.has("script") && p.has("plugin_config_id") {
		return fieldErr(path, "script", "script and plugin_config_id are mutually exclusive")
	}
	if i := firstDup(r.Methods); i >= 0 {
		return &FieldError{Path: indexPath(joinPath(path, "methods"), i), Rule: "duplicate item"}
	}
	for i, m := range r.Methods {
		if err := checkEnum(indexPath(joinPath(path, "methods"), i), m, httpMethods...); err != nil {
			return err
		}
	}
	switch {
	case p.has("host") && p.has("hosts"):
		return fieldErr(path, "hosts", "only one of host or hosts is allowed")
	case p.has("host"):
		if err := checkHost(joinPath(path, "host"), r.Host); err != nil {
			return err
		}
	case p.has("hosts"):
		if err := checkHostList(joinPath(path, "hosts"), r.Hosts); err != nil {
			return err
		}
	}
	switch {
	case p.has("remote_addr") && p.has("remote_addrs"):
		return fieldErr(path, "remote_addrs", "only one of remote_addr or remote_addrs is allowed")
	case p.has("remote_addr"):
		if err := checkIP(joinPath(path, "remote_addr"), r.RemoteAddr); err != nil {
			return err
		}
	case p.has("remote_addrs"):
		if err := checkIPList(joinPath(path, "remote_addrs"), r.RemoteAddrs); err != nil {
			return err
		}
	}
	if p.has("vars") {
		if _, err := parseVars(joinPath(path, "vars"), r.Vars); err != nil {
			return err
		}
	}
	if p.has("filter_func") {
		if len(r.FilterFunc) < 10 || !strings.HasPrefix(r.FilterFunc, "function") {
			return fieldErr(path, "filter_func", "must be Lua source of at least 10 characters starting with \"function\"")
		}
	}
	if p.has("script") {
		if err := checkStrLen(joinPath(path, "script"), r.Script, 10, 102400); err != nil {
			return err
		}
	}
	if r.Status != nil && *r.Status != 0 && *r.Status != 1 {
		return fieldErr(path, "status", "must be 0 or 1")
	}
	return nil
}

// checkMeta checks the metadata fields most objects share.
func checkMeta(path string, p fieldSet, name, desc string, labels Labels) error {
	if p.has("name") {
		if err := checkName(path, "name", name); err != nil {
			return err
		}
	}
	if err := checkDesc(path, desc); err != nil {
		return err
	}
	return checkLabels(path, labels)
}

// Enabled reports whether the route is routed (status absent or 1).
func (r *Route) Enabled() bool { return r.Status == nil || *r.Status == 1 }

// Enabled reports whether the certificate is served (status absent or 1).
func (s *SSL) Enabled() bool { return s.Status == nil || *s.Status == 1 }

package apisix

import (
	"net/netip"
	"strings"
)

// Balancer types meshagent's data plane implements (APISIX's
// apisix/balancer/*.lua).
var upstreamTypes = []string{"roundrobin", "chash", "ewma", "least_conn"}

// check applies schema_def.lua upstream_schema (defaults included) and
// upstream.lua check_upstream_conf.
func (u *Upstream) check(path string, p fieldSet) error {
	if err := checkMeta(path, p, u.Name, u.Desc, u.Labels); err != nil {
		return err
	}
	discovery := p.has("service_name") && p.has("discovery_type")
	switch {
	case p.has("nodes") && discovery:
		return fieldErr(path, "nodes", "only one of nodes or service_name+discovery_type is allowed")
	case !p.has("nodes") && !discovery:
		if p.has("service_name") {
			return fieldErr(path, "discovery_type", "is required with service_name")
		}
		return fieldErr(path, "nodes", "is required (or service_name with discovery_type)")
	}
	if p.has("service_name") {
		if err := checkStrLen(joinPath(path, "service_name"), u.ServiceName, 1, 256); err != nil {
			return err
		}
	}
	for _, k := range []string{"namespace_id", "group_name"} {
		if v, ok := u.DiscoveryArgs[k]; ok {
			if _, isStr := v.(string); !isStr {
				return fieldErr(joinPath(path, "discovery_args"), k, "must be a string")
			}
		}
	}
	if err := defaultEnum(path, p, "type", &u.Type, "roundrobin", upstreamTypes...); err != nil {
		return err
	}
	if err := defaultEnum(path, p, "hash_on", &u.HashOn, "vars", "vars", "header", "cookie", "consumer", "vars_combinations"); err != nil {
		return err
	}
	if err := defaultEnum(path, p, "scheme", &u.Scheme, "http", "grpc", "grpcs", "http", "https", "tcp", "tls", "udp", "kafka"); err != nil {
		return err
	}
	if err := defaultEnum(path, p, "pass_host", &u.PassHost, "pass", "pass", "node", "rewrite"); err != nil {
		return err
	}
	if p.has("upstream_host") {
		if err := checkHost(joinPath(path, "upstream_host"), u.UpstreamHost); err != nil {
			return err
		}
	}
	if u.PassHost == "rewrite" && u.UpstreamHost == "" {
		return fieldErr(path, "upstream_host", "is required when pass_host is rewrite")
	}
	if u.Retries != nil && *u.Retries < 0 {
		return fieldErr(path, "retries", "must be >= 0")
	}
	if u.RetryTimeout != nil && *u.RetryTimeout < 0 {
		return fieldErr(path, "retry_timeout", "must be >= 0")
	}
	if u.Type == "chash" {
		if u.HashOn != "consumer" && u.Key == "" {
			return fieldErr(path, "key", "is required when type is chash")
		}
		switch u.HashOn {
		case "vars":
			if !hashVarsRe.MatchString(u.Key) {
				return fieldErr(path, "key", "must match "+hashVarsRe.String())
			}
		case "header", "cookie":
			if !hashHeaderRe.MatchString(u.Key) {
				return fieldErr(path, "key", "must match ^[a-zA-Z0-9-_]+$")
			}
		}
	}
	return nil
}

// check applies the array-form node schema and upstream.lua check_schema.
func (n *Node) check(path string, p fieldSet) error {
	if !p.has("host") {
		return fieldErr(path, "host", "is required")
	}
	if !p.has("weight") {
		return fieldErr(path, "weight", "is required")
	}
	if err := checkHost(joinPath(path, "host"), n.Host); err != nil {
		return err
	}
	if strings.Count(n.Host, ":") >= 2 && !strings.HasPrefix(n.Host, "[") {
		if a, err := netip.ParseAddr(n.Host); err == nil && a.Is6() {
			return fieldErr(path, "host", "IPv6 address must be enclosed with '[' and ']'")
		}
	}
	if p.has("port") {
		if err := checkIntRange(joinPath(path, "port"), n.Port, 1, 65535); err != nil {
			return err
		}
	}
	if n.Weight < 0 {
		return fieldErr(path, "weight", "must be >= 0")
	}
	return nil
}

// check applies upstream.tls: client_cert and client_key together, not
// with client_cert_id, and the pair must parse.
func (t *UpstreamTLS) check(path string, p fieldSet) error {
	hasCert, hasKey := p.has("client_cert"), p.has("client_key")
	switch {
	case hasCert && !hasKey:
		return fieldErr(path, "client_key", "is required with client_cert")
	case hasKey && !hasCert:
		return fieldErr(path, "client_cert", "is required with client_key")
	case hasCert && p.has("client_cert_id"):
		return fieldErr(path, "client_cert_id", "client_cert_id and client_cert+client_key are mutually exclusive")
	}
	if hasCert {
		return checkCertKey(path, "client_cert", "client_key", t.ClientCert, t.ClientKey)
	}
	return nil
}

// check applies keepalive_pool's ranges and defaults (size 320,
// idle_timeout 60, requests 1000).
func (k *KeepalivePool) check(path string, p fieldSet) error {
	if !p.has("size") {
		k.Size = 320
	} else if k.Size < 1 {
		return fieldErr(path, "size", "must be >= 1")
	}
	if !p.has("idle_timeout") {
		k.IdleTimeout = 60
	} else if k.IdleTimeout < 0 {
		return fieldErr(path, "idle_timeout", "must be >= 0")
	}
	if !p.has("requests") {
		k.Requests = 1000
	} else if k.Requests < 1 {
		return fieldErr(path, "requests", "must be >= 1")
	}
	return nil
}

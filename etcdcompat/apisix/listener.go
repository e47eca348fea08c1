package apisix

import (
	"net"
	"net/netip"
	"strconv"
)

// Rules of meshagent's own Listener object (not an APISIX schema).

func (l *Listener) check(path string, p fieldSet) error {
	if err := checkLabels(path, l.Labels); err != nil {
		return err
	}
	if !p.has("address") {
		return fieldErr(path, "address", "is required")
	}
	if err := checkListenAddr(joinPath(path, "address"), l.Address); err != nil {
		return err
	}
	if err := checkEnum(joinPath(path, "direction"), l.Direction, "", "inbound", "outbound"); err != nil {
		return err
	}
	if !p.has("filter_chains") {
		return fieldErr(path, "filter_chains", "is required")
	}
	if len(l.FilterChains) == 0 && l.DefaultChain == nil {
		return fieldErr(path, "filter_chains", "must have at least 1 item (or default_filter_chain)")
	}
	names := map[string]int{}
	for i, fc := range l.FilterChains {
		if fc.Name == "" {
			continue
		}
		if j, dup := names[fc.Name]; dup {
			return fieldErr(indexPath(joinPath(path, "filter_chains"), i), "name", "duplicates filter_chains["+strconv.Itoa(j)+"]")
		}
		names[fc.Name] = i
	}
	return nil
}

// checkListenAddr requires host:port with an IP (or empty) host and a
// port in 0..65535.
func checkListenAddr(path, addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return &FieldError{Path: path, Rule: "must be host:port"}
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			return &FieldError{Path: path, Rule: "host must be an IP address, localhost or empty"}
		}
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 0 || n > 65535 {
		return &FieldError{Path: path, Rule: "port must be in 0..65535"}
	}
	return nil
}

func (fc *FilterChain) check(path string, p fieldSet) error {
	if !p.has("kind") {
		return fieldErr(path, "kind", "is required")
	}
	switch fc.Kind {
	case "http":
		if fc.RouteConfig == "" {
			return fieldErr(path, "route_config", "is required when kind is http")
		}
		if fc.StreamRouteID != "" {
			return fieldErr(path, "stream_route_id", "is not allowed when kind is http")
		}
	case "tcp":
		if fc.StreamRouteID == "" {
			return fieldErr(path, "stream_route_id", "is required when kind is tcp")
		}
		if fc.RouteConfig != "" {
			return fieldErr(path, "route_config", "is not allowed when kind is tcp")
		}
	default:
		return fieldErr(path, "kind", "must be one of http, tcp")
	}
	return nil
}

func (m *FilterChainMatch) check(path string, p fieldSet) error {
	if err := checkIntRange(joinPath(path, "destination_port"), m.DestinationPort, 0, 65535); err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		v    []string
	}{{"prefix_ranges", m.PrefixRanges}, {"source_prefix_ranges", m.SourcePrefixes}} {
		for i, s := range f.v {
			if _, ok := parseIPOrCIDR(s); !ok {
				return &FieldError{Path: indexPath(joinPath(path, f.name), i), Rule: "must be an IP address or CIDR"}
			}
		}
	}
	return checkEnum(joinPath(path, "transport_protocol"), m.TransportProtocol, "", "raw_buffer", "tls")
}

func (t *DownstreamTLS) check(path string, p fieldSet) error {
	if t.SSLID == "" && t.SecretName == "" {
		return fieldErr(path, "ssl_id", "one of ssl_id or secret_name is required")
	}
	if t.SSLID != "" && t.SecretName != "" {
		return fieldErr(path, "secret_name", "ssl_id and secret_name are mutually exclusive")
	}
	return nil
}

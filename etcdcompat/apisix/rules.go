package apisix

import (
	"net/netip"
	"regexp"
	"strconv"
	"unicode/utf8"
)

// Shared field rules of APISIX's schema_def.lua, as small functions that
// return a *FieldError naming path.name.

var (
	// hostRe is schema_def.lua host_def: ^\*$|^\*?[0-9a-zA-Z-._\[\]:]+$
	hostRe = regexp.MustCompile(`^\*$|^\*?[0-9a-zA-Z\-._\[\]:]+$`)
	// hashVarsRe is upstream_hash_vars_schema (A-z as in APISIX).
	hashVarsRe = regexp.MustCompile(`^((uri|server_name|server_addr|request_uri|remote_port|remote_addr|query_string|host|hostname|mqtt_client_id)|arg_[0-9a-zA-z_-]+)$`)
	// hashHeaderRe is upstream_hash_header_schema.
	hashHeaderRe = regexp.MustCompile(`^[a-zA-Z0-9\-_]+$`)
	// usernameRe is the consumer username pattern.
	usernameRe = regexp.MustCompile(`^[a-zA-Z0-9_\-]+$`)
)

const (
	maxNameLen = 256
	maxDescLen = 256
)

func checkName(path, field, s string) error {
	if n := utf8.RuneCountInString(s); n < 1 || n > maxNameLen {
		return fieldErr(path, field, "length must be in 1.."+strconv.Itoa(maxNameLen))
	}
	return nil
}

func checkDesc(path, s string) error {
	if utf8.RuneCountInString(s) > maxDescLen {
		return fieldErr(path, "desc", "length must be at most "+strconv.Itoa(maxDescLen))
	}
	return nil
}

// checkLabels applies label_value_def: 1..256 characters, no whitespace.
func checkLabels(path string, l Labels) error {
	for k, v := range l {
		if n := utf8.RuneCountInString(v); n < 1 || n > 256 {
			return &FieldError{Path: keyPath(joinPath(path, "labels"), k), Rule: "label value length must be in 1..256"}
		}
		for i := 0; i < len(v); i++ {
			switch v[i] {
			case ' ', '\t', '\n', '\r', '\f', '\v':
				return &FieldError{Path: keyPath(joinPath(path, "labels"), k), Rule: `label value must match ^\S+$`}
			}
		}
	}
	return nil
}

// checkHost applies host_def.
func checkHost(path, s string) error {
	if !hostRe.MatchString(s) {
		return &FieldError{Path: path, Rule: `must match ^\*$|^\*?[0-9a-zA-Z-._\[\]:]+$`}
	}
	return nil
}

// checkHostList applies an array of host_def with minItems 1 and
// uniqueItems.
func checkHostList(path string, hosts []string) error {
	if len(hosts) == 0 {
		return &FieldError{Path: path, Rule: "must have at least 1 item"}
	}
	if i := firstDup(hosts); i >= 0 {
		return &FieldError{Path: indexPath(path, i), Rule: "duplicate item"}
	}
	for i, h := range hosts {
		if err := checkHost(indexPath(path, i), h); err != nil {
			return err
		}
	}
	return nil
}

// checkIP applies ip_def: an IPv4 or IPv6 address, or a CIDR of either.
func checkIP(path, s string) error {
	if _, err := netip.ParseAddr(s); err == nil && !hasZone(s) {
		return nil
	}
	if _, err := netip.ParsePrefix(s); err == nil {
		return nil
	}
	return &FieldError{Path: path, Rule: "must be an IPv4 or IPv6 address or CIDR"}
}

func hasZone(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == '%' {
			return true
		}
	}
	return false
}

// checkIPList applies an array of ip_def with minItems 1 and uniqueItems.
func checkIPList(path string, addrs []string) error {
	if len(addrs) == 0 {
		return &FieldError{Path: path, Rule: "must have at least 1 item"}
	}
	if i := firstDup(addrs); i >= 0 {
		return &FieldError{Path: indexPath(path, i), Rule: "duplicate item"}
	}
	for i, a := range addrs {
		if err := checkIP(indexPath(path, i), a); err != nil {
			return err
		}
	}
	return nil
}

// checkEnum reports whether s is one of allowed.
func checkEnum(path, s string, allowed ...string) error {
	for _, a := range allowed {
		if s == a {
			return nil
		}
	}
	rule := "must be one of"
	for i, a := range allowed {
		if i > 0 {
			rule += ","
		}
		rule += " " + a
	}
	return &FieldError{Path: path, Rule: rule}
}

// defaultEnum fills *s with def when the field is absent, then checks the
// enum (an explicit "" is an error, as in APISIX).
func defaultEnum(path string, present fieldSet, field string, s *string, def string, allowed ...string) error {
	if !present.has(field) {
		*s = def
		return nil
	}
	return checkEnum(joinPath(path, field), *s, allowed...)
}

func checkIntRange(path string, v, lo, hi int) error {
	if v < lo || v > hi {
		return &FieldError{Path: path, Rule: "must be in " + strconv.Itoa(lo) + ".." + strconv.Itoa(hi)}
	}
	return nil
}

func firstDup[T comparable](s []T) int {
	if len(s) < 2 {
		return -1
	}
	seen := make(map[T]struct{}, len(s))
	for i, v := range s {
		if _, ok := seen[v]; ok {
			return i
		}
		seen[v] = struct{}{}
	}
	return -1
}

// checkStrLen checks a string's length in characters.
func checkStrLen(path string, s string, lo, hi int) error {
	if n := utf8.RuneCountInString(s); n < lo || n > hi {
		return &FieldError{Path: path, Rule: "length must be in " + strconv.Itoa(lo) + ".." + strconv.Itoa(hi)}
	}
	return nil
}

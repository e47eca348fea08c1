package apisix

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"reflect"
	"slices"
	"strconv"
	"strings"
)

// This file holds the types that decode themselves: ID (string or
// integer), Nodes (map or array form), Plugins (object of objects),
// PluginMetadata (any object) and Credential (its own id rule). Each also
// implements encoding/json's interfaces so plain json.Unmarshal accepts
// APISIX's forms too.

func (id *ID) decodeJSON(path string, raw []byte) error {
	switch {
	case raw[0] == '"':
		s := unquote(raw)
		if !validIDString(s) {
			return &FieldError{Path: path, Rule: "must be 1..64 characters of [a-zA-Z0-9-_.] or an integer >= 1"}
		}
		*id = ID(s)
		return nil
	case raw[0] == '-' || raw[0] >= '0' && raw[0] <= '9':
		n, ok := parseInteger(raw)
		if !ok || n < 1 {
			return &FieldError{Path: path, Rule: "must be an integer >= 1 or a string"}
		}
		*id = ID(strconv.FormatInt(n, 10))
		return nil
	}
	return &FieldError{Path: path, Rule: "must be a string or an integer"}
}

// UnmarshalJSON accepts a string or a positive integer, as APISIX does.
func (id *ID) UnmarshalJSON(data []byte) error {
	data = trimJSONSpace(data)
	if err := syntaxCheck(data); err != nil {
		return err
	}
	return id.decodeJSON("id", data)
}

func validIDString(s string) bool {
	if len(s) < 1 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

func (n *Nodes) decodeJSON(path string, raw []byte) error {
	switch raw[0] {
	case '[':
		return decodeValue(path, raw, reflect.ValueOf((*[]Node)(n)).Elem())
	case '{':
		var out Nodes // grown from nil: the usual single node costs 48 bytes, not 4x that
		seen := map[string]bool{}
		err := forEachMember(raw, func(k string, val []byte) error {
			p := keyPath(path, k)
			if seen[k] {
				return &FieldError{Path: p, Rule: "duplicate node"}
			}
			seen[k] = true
			w, ok := parseInteger(val)
			if !ok || w < 0 || w > 1<<31-1 {
				return &FieldError{Path: p, Rule: "weight must be an integer >= 0"}
			}
			host, port, rule := parseNodeAddr(k)
			if rule != "" {
				return &FieldError{Path: p, Rule: rule}
			}
			out = append(out, Node{Host: host, Port: port, Weight: int(w)})
			return nil
		})
		if err != nil {
			return err
		}
		if out == nil {
			out = Nodes{} // {} decodes to an empty list, encoded as []
		}
		*n = out
		return nil
	}
	return &FieldError{Path: path, Rule: "must be an object {\"host:port\": weight} or an array of nodes"}
}

// UnmarshalJSON accepts both of APISIX's node forms: {"host:port": weight}
// and [{"host": ..., "port": ..., "weight": ...}].
func (n *Nodes) UnmarshalJSON(data []byte) error {
	data = trimJSONSpace(data)
	if err := syntaxCheck(data); err != nil {
		return err
	}
	return n.decodeJSON("nodes", data)
}

// parseNodeAddr splits a map-form node address the way APISIX's
// core.utils.parse_addr does: "[v6]:port", "[v6]", "host:port", "host"
// or a bare IPv6 literal. IPv6 hosts are returned in brackets. A missing
// port is 0. rule is non-empty when the address is malformed.
func parseNodeAddr(addr string) (host string, port int, rule string) {
	if addr == "" {
		return "", 0, "node address must not be empty"
	}
	portOf := func(s string) (int, string) {
		p, err := strconv.Atoi(s)
		if err != nil || p < 1 || p > 65535 || s[0] == '+' {
			return 0, "port must be in 1..65535"
		}
		return p, ""
	}
	if addr[0] == '[' {
		if addr[len(addr)-1] == ']' {
			host = addr
		} else {
			i := strings.LastIndexByte(addr, ':')
			if i < 1 || addr[i-1] != ']' {
				return "", 0, "malformed IPv6 node address"
			}
			host = addr[:i]
			if port, rule = portOf(addr[i+1:]); rule != "" {
				return "", 0, rule
			}
		}
		if a, err := netip.ParseAddr(host[1 : len(host)-1]); err != nil || !a.Is6() || a.Zone() != "" {
			return "", 0, "malformed IPv6 node address"
		}
		return host, port, ""
	}
	switch strings.Count(addr, ":") {
	case 0:
		return addr, 0, ""
	case 1:
		h, p, _ := strings.Cut(addr, ":")
		if h == "" {
			return "", 0, "node host must not be empty"
		}
		if port, rule = portOf(p); rule != "" {
			return "", 0, rule
		}
		return h, port, ""
	}
	if a, err := netip.ParseAddr(addr); err != nil || !a.Is6() || a.Zone() != "" {
		return "", 0, "malformed node address"
	}
	return "[" + addr + "]", 0, ""
}

func (p *Plugins) decodeJSON(path string, raw []byte) error {
	if raw[0] != '{' {
		return &FieldError{Path: path, Rule: "must be an object"}
	}
	out := make(Plugins)
	err := forEachMember(raw, func(k string, val []byte) error {
		kp := keyPath(path, k)
		if _, dup := out[k]; dup {
			return &FieldError{Path: kp, Rule: "duplicate plugin"}
		}
		if k == "" {
			return &FieldError{Path: kp, Rule: "plugin name must not be empty"}
		}
		if val[0] != '{' {
			return &FieldError{Path: kp, Rule: "plugin configuration must be an object"}
		}
		out[k] = json.RawMessage(bytes.Clone(val))
		return nil
	})
	if err != nil {
		return err
	}
	*p = out
	return nil
}

func (m *PluginMetadata) decodeJSON(path string, raw []byte) error {
	if raw[0] != '{' {
		return &FieldError{Path: path, Rule: "must be a JSON object"}
	}
	fields := make(map[string]json.RawMessage)
	err := forEachMember(raw, func(k string, val []byte) error {
		if k == "id" {
			return m.ID.decodeJSON(joinPath(path, "id"), val)
		}
		if _, dup := fields[k]; dup {
			return &FieldError{Path: keyPath(path, k), Rule: "duplicate field"}
		}
		fields[k] = json.RawMessage(bytes.Clone(val))
		return nil
	})
	if err != nil {
		return err
	}
	m.Fields = fields
	return nil
}

// MarshalJSON writes the plugin's fields and "id" as one flat object, with
// keys sorted.
func (m PluginMetadata) MarshalJSON() ([]byte, error) {
	keys := make([]string, 0, len(m.Fields)+1)
	for k := range m.Fields {
		if k != "id" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b bytes.Buffer
	b.WriteByte('{')
	if m.ID != "" {
		b.WriteString(`"id":`)
		b.WriteString(strconv.Quote(string(m.ID)))
	}
	for i, k := range keys {
		if i > 0 || m.ID != "" {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		b.Write(kb)
		b.WriteByte(':')
		var c bytes.Buffer
		if err := json.Compact(&c, m.Fields[k]); err != nil {
			return nil, err
		}
		b.Write(c.Bytes())
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON reads a flat object: "id" into ID, every other key into
// Fields.
func (m *PluginMetadata) UnmarshalJSON(data []byte) error {
	data = trimJSONSpace(data)
	if err := syntaxCheck(data); err != nil {
		return err
	}
	return m.decodeJSON("", data)
}

// credentialJSON is Credential with its id kept raw: a credential id is
// either a plain id or "<username>/credentials/<id>".
type credentialJSON struct {
	ID         json.RawMessage `json:"id"`
	Name       string          `json:"name"`
	Desc       string          `json:"desc"`
	Labels     Labels          `json:"labels"`
	CreateTime int64           `json:"create_time"`
	UpdateTime int64           `json:"update_time"`
	Plugins    Plugins         `json:"plugins"`
}

func (c *Credential) decodeJSON(path string, raw []byte) error {
	var cj credentialJSON
	if err := decodeStruct(path, raw, reflect.ValueOf(&cj).Elem()); err != nil {
		return err
	}
	*c = Credential{Name: cj.Name, Desc: cj.Desc, Labels: cj.Labels, CreateTime: cj.CreateTime,
		UpdateTime: cj.UpdateTime, Plugins: cj.Plugins}
	if cj.ID != nil {
		if cj.ID[0] == '"' && validCredentialPath(unquote(cj.ID)) {
			c.ID = ID(unquote(cj.ID))
		} else if err := c.ID.decodeJSON(joinPath(path, "id"), cj.ID); err != nil {
			return err
		}
	}
	return nil
}

func (c *credentialJSON) check(path string, present fieldSet) error {
	if present.has("name") {
		if err := checkName(path, "name", c.Name); err != nil {
			return err
		}
	}
	if err := checkDesc(path, c.Desc); err != nil {
		return err
	}
	if err := checkLabels(path, c.Labels); err != nil {
		return err
	}
	if len(c.Plugins) > 1 {
		return fieldErr(path, "plugins", "must hold at most 1 plugin")
	}
	return nil
}

// validCredentialPath reports whether s is "<username>/credentials/<id>"
// (APISIX: 15..128 chars, ^[a-zA-Z0-9-_]+/credentials/[a-zA-Z0-9-_.]+$).
func validCredentialPath(s string) bool {
	if len(s) < 15 || len(s) > 128 {
		return false
	}
	user, id, ok := strings.Cut(s, "/credentials/")
	if !ok || user == "" || id == "" || strings.Contains(user, ".") {
		return false
	}
	for _, part := range []string{user, id} {
		for i := 0; i < len(part); i++ {
			c := part[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
				return false
			}
		}
	}
	return true
}

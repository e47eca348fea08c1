package rbac

import (
	"encoding/json"
	"fmt"
	"reflect"
)

// permissionJSON is config.rbac.v3.Permission (a oneof) in protojson.
type permissionJSON struct {
	AndRules             *setJSON           `json:"andRules"`
	OrRules              *setJSON           `json:"orRules"`
	Any                  *bool              `json:"any"`
	Header               *headerMatcherJSON `json:"header"`
	URLPath              *pathJSON          `json:"urlPath"`
	DestinationIP        *cidrJSON          `json:"destinationIp"`
	DestinationPort      *json.Number       `json:"destinationPort"`
	DestinationPortRange *rangeJSON         `json:"destinationPortRange"`
	Metadata             json.RawMessage    `json:"metadata"`
	NotRule              json.RawMessage    `json:"notRule"`
	RequestedServerName  *stringMatcherJSON `json:"requestedServerName"`
	Matcher              json.RawMessage    `json:"matcher"`
	URITemplate          json.RawMessage    `json:"uriTemplate"`
	SourcedMetadata      json.RawMessage    `json:"sourcedMetadata"`
}

// principalJSON is config.rbac.v3.Principal (a oneof) in protojson.
type principalJSON struct {
	AndIDs          *idSetJSON         `json:"andIds"`
	OrIDs           *idSetJSON         `json:"orIds"`
	Any             *bool              `json:"any"`
	Authenticated   *authJSON          `json:"authenticated"`
	SourceIP        *cidrJSON          `json:"sourceIp"`
	DirectRemoteIP  *cidrJSON          `json:"directRemoteIp"`
	RemoteIP        *cidrJSON          `json:"remoteIp"`
	Header          *headerMatcherJSON `json:"header"`
	URLPath         *pathJSON          `json:"urlPath"`
	Metadata        json.RawMessage    `json:"metadata"`
	FilterState     json.RawMessage    `json:"filterState"`
	NotID           json.RawMessage    `json:"notId"`
	SourcedMetadata json.RawMessage    `json:"sourcedMetadata"`
	CustomID        json.RawMessage    `json:"customIdentifier"`
}

type setJSON struct {
	Rules []json.RawMessage `json:"rules"`
}

type idSetJSON struct {
	IDs []json.RawMessage `json:"ids"`
}

type authJSON struct {
	PrincipalName *stringMatcherJSON `json:"principalName"`
}

type pathJSON struct {
	Path *stringMatcherJSON `json:"path"`
}

// oneof returns the names of the set fields of a oneof struct.
func oneof(v any) []string {
	rv := reflect.ValueOf(v).Elem()
	var set []string
	for i := 0; i < rv.NumField(); i++ {
		f := rv.Field(i)
		if !f.IsZero() {
			set = append(set, rv.Type().Field(i).Tag.Get("json"))
		}
	}
	return set
}

func one(field string, v any) (string, error) {
	set := oneof(v)
	if len(set) != 1 {
		return "", fmt.Errorf("%w: field %q: exactly one rule is required, got %v", ErrInvalid, field, set)
	}
	return set[0], nil
}

func bad(field string, err error) error {
	return fmt.Errorf("%w: field %q: %v", ErrInvalid, field, err)
}

func unsupported(field string) error {
	return fmt.Errorf("%w: field %q: not supported", ErrInvalid, field)
}

// compileSet compiles the members of an and/or set (permissions' rules or
// principals' ids) one level deeper.
func compileSet(field, list string, kind ruleKind, items []json.RawMessage, depth int,
	compile func(string, json.RawMessage, int) (*rule, error)) (*rule, error) {
	r := &rule{kind: kind}
	for i, c := range items {
		cr, err := compile(fmt.Sprintf("%s.%s[%d]", field, list, i), c, depth+1)
		if err != nil {
			return nil, err
		}
		r.children = append(r.children, cr)
	}
	return r, nil
}

// decodeRule checks the nesting depth, strictly decodes one permission
// or principal into j, and returns the name of its one set field and that
// field's path.
func decodeRule(field string, raw json.RawMessage, depth int, j any) (name, path string, err error) {
	if depth > maxDepth {
		return "", "", fmt.Errorf("%w: field %q: nested deeper than %d", ErrInvalid, field, maxDepth)
	}
	if err := strict(raw, j); err != nil {
		return "", "", bad(field, err)
	}
	if name, err = one(field, j); err != nil {
		return "", "", err
	}
	return name, field + "." + name, nil
}

func compilePermission(field string, raw json.RawMessage, depth int) (*rule, error) {
	var j permissionJSON
	name, f, err := decodeRule(field, raw, depth, &j)
	if err != nil {
		return nil, err
	}
	switch name {
	case "andRules":
		return compileSet(f, "rules", rAnd, j.AndRules.Rules, depth, compilePermission)
	case "orRules":
		return compileSet(f, "rules", rOr, j.OrRules.Rules, depth, compilePermission)
	case "any":
		if !*j.Any {
			return nil, bad(f, fmt.Errorf("must be true"))
		}
		return &rule{kind: rAny}, nil
	case "header":
		h, err := j.Header.compile(f)
		if err != nil {
			return nil, bad(f, err)
		}
		return &rule{kind: rHeader, header: h}, nil
	case "urlPath":
		return compilePath(f, j.URLPath)
	case "destinationIp":
		p, err := j.DestinationIP.compile(f)
		if err != nil {
			return nil, bad(f, err)
		}
		return &rule{kind: rDestIP, prefix: p}, nil
	case "destinationPort":
		n, err := j.DestinationPort.Int64()
		if err != nil || n < 0 || n > 65535 {
			return nil, bad(f, fmt.Errorf("must be 0..65535"))
		}
		return &rule{kind: rDestPort, lo: uint32(n)}, nil
	case "destinationPortRange":
		s, err1 := j.DestinationPortRange.Start.Int64()
		e, err2 := j.DestinationPortRange.End.Int64()
		if err1 != nil || err2 != nil || s < 0 || e > 65536 || s >= e {
			return nil, bad(f, fmt.Errorf("start and end must be ports with start < end"))
		}
		return &rule{kind: rDestPortRange, lo: uint32(s), hi: uint32(e)}, nil
	case "notRule":
		c, err := compilePermission(f, j.NotRule, depth+1)
		if err != nil {
			return nil, err
		}
		return &rule{kind: rNot, children: []*rule{c}}, nil
	case "requestedServerName":
		m, err := j.RequestedServerName.compile(f)
		if err != nil {
			return nil, bad(f, err)
		}
		return &rule{kind: rSNI, str: m, hasStr: true}, nil
	}
	return nil, unsupported(f)
}

func compilePath(f string, p *pathJSON) (*rule, error) {
	if p.Path == nil {
		return nil, bad(f+".path", fmt.Errorf("is required"))
	}
	m, err := p.Path.compile(f + ".path")
	if err != nil {
		return nil, bad(f, err)
	}
	return &rule{kind: rPath, str: m, hasStr: true}, nil
}

func compilePrincipal(field string, raw json.RawMessage, depth int) (*rule, error) {
	var j principalJSON
	name, f, err := decodeRule(field, raw, depth, &j)
	if err != nil {
		return nil, err
	}
	switch name {
	case "andIds":
		return compileSet(f, "ids", rAnd, j.AndIDs.IDs, depth, compilePrincipal)
	case "orIds":
		return compileSet(f, "ids", rOr, j.OrIDs.IDs, depth, compilePrincipal)
	case "any":
		if !*j.Any {
			return nil, bad(f, fmt.Errorf("must be true"))
		}
		return &rule{kind: rAny}, nil
	case "authenticated":
		r := &rule{kind: rAuthenticated}
		if j.Authenticated.PrincipalName != nil {
			m, err := j.Authenticated.PrincipalName.compile(f + ".principalName")
			if err != nil {
				return nil, bad(f, err)
			}
			r.str, r.hasStr = m, true
		}
		return r, nil
	case "sourceIp", "directRemoteIp", "remoteIp":
		c, kind := j.SourceIP, rDirectRemoteIP // source_ip is the deprecated direct_remote_ip
		switch name {
		case "directRemoteIp":
			c = j.DirectRemoteIP
		case "remoteIp":
			c, kind = j.RemoteIP, rRemoteIP
		}
		p, err := c.compile(f)
		if err != nil {
			return nil, bad(f, err)
		}
		return &rule{kind: kind, prefix: p}, nil
	case "header":
		h, err := j.Header.compile(f)
		if err != nil {
			return nil, bad(f, err)
		}
		return &rule{kind: rHeader, header: h}, nil
	case "urlPath":
		return compilePath(f, j.URLPath)
	case "notId":
		c, err := compilePrincipal(f, j.NotID, depth+1)
		if err != nil {
			return nil, err
		}
		return &rule{kind: rNot, children: []*rule{c}}, nil
	}
	return nil, unsupported(f)
}

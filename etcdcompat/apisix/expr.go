package apisix

import (
	"encoding/json"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

// LogicOp combines the children of an Expr group.
type LogicOp int

// Logic operators of lua-resty-expr. A list whose first item is itself a
// list is an implicit AND.
const (
	LogicAnd LogicOp = iota
	LogicOr
	LogicNotAnd
	LogicNotOr
)

// String returns the operator as written in vars ("AND", "!OR", ...).
func (o LogicOp) String() string {
	switch o {
	case LogicAnd:
		return "AND"
	case LogicOr:
		return "OR"
	case LogicNotAnd:
		return "!AND"
	case LogicNotOr:
		return "!OR"
	}
	return "unknown"
}

// Expr is a parsed lua-resty-expr (v1) expression, the language of a
// route's vars. A group (Children non-nil) combines children with Logic;
// a leaf compares the variable Var with Value using Op ("==", "~=", ">",
// ">=", "<", "<=", "~~", "~*", "in", "has", "ipmatch"), negated when Not.
// An empty group is always true. Regex holds the compiled pattern of ~~
// and ~* (case-insensitive for ~*); Prefixes the networks of ipmatch.
type Expr struct {
	Logic    LogicOp
	Children []*Expr

	Var      string
	Not      bool
	Op       string
	Value    any
	Regex    *regexp.Regexp
	Prefixes []netip.Prefix
}

// IsGroup reports whether e combines children rather than compares.
func (e *Expr) IsGroup() bool { return e.Children != nil }

var compareOps = map[string]bool{
	"==": true, "~=": true, ">": true, ">=": true, "<": true, "<=": true,
	"~~": true, "~*": true, "in": true, "has": true, "ipmatch": true,
}

var logicOps = map[string]LogicOp{"OR": LogicOr, "!OR": LogicNotOr, "AND": LogicAnd, "!AND": LogicNotAnd}

// ParseVars parses and validates a route's vars exactly as
// lua-resty-expr's expr.new does (structure, operators, "!" negation,
// nested groups), and additionally compiles ~~/~* patterns (Go RE2 syntax)
// and ipmatch networks. Errors name the offending element, e.g.
// "vars[1][1]: invalid operator 'like'".
func ParseVars(raw json.RawMessage) (*Expr, error) {
	return parseVars("vars", raw)
}

func parseVars(path string, raw json.RawMessage) (*Expr, error) {
	var rule any
	if err := json.Unmarshal(raw, &rule); err != nil {
		return nil, &FieldError{Path: path, Rule: "must be a JSON array"}
	}
	list, ok := rule.([]any)
	if !ok {
		return nil, &FieldError{Path: path, Rule: "must be an array"}
	}
	if len(list) == 0 {
		return &Expr{Children: []*Expr{}}, nil
	}
	if _, isList := list[0].([]any); !isList {
		s, _ := list[0].(string)
		if _, ok := logicOps[strings.ToUpper(s)]; !ok {
			return nil, &FieldError{Path: path, Rule: "rule should be wrapped inside brackets"}
		}
	}
	return compileRule(path, list)
}

// maxVarsDepth bounds the nesting of vars groups (far beyond any real
// route; it keeps hostile input from costing quadratic time).
const maxVarsDepth = 64

func compileRule(path string, rules []any) (*Expr, error) {
	return compileRuleDepth(path, rules, 0)
}

func compileRuleDepth(path string, rules []any, depth int) (*Expr, error) {
	if depth > maxVarsDepth {
		return nil, &FieldError{Path: path, Rule: "expression nested deeper than " + strconv.Itoa(maxVarsDepth)}
	}
	if len(rules) == 0 {
		return nil, &FieldError{Path: path, Rule: "rule too short"}
	}
	if _, isList := rules[0].([]any); isList {
		g := &Expr{Logic: LogicAnd, Children: make([]*Expr, 0, len(rules))}
		for i, r := range rules {
			sub, ok := r.([]any)
			if !ok {
				return nil, &FieldError{Path: indexPath(path, i), Rule: "invalid expression: must be an array"}
			}
			c, err := compileRuleDepth(indexPath(path, i), sub, depth+1)
			if err != nil {
				return nil, err
			}
			g.Children = append(g.Children, c)
		}
		return g, nil
	}
	if s, ok := rules[0].(string); ok {
		if op, isLogic := logicOps[strings.ToUpper(s)]; isLogic {
			if len(rules) <= 2 {
				return nil, &FieldError{Path: path, Rule: "rule too short"}
			}
			g := &Expr{Logic: op, Children: make([]*Expr, 0, len(rules)-1)}
			for i, r := range rules[1:] {
				sub, ok := r.([]any)
				if !ok {
					return nil, &FieldError{Path: indexPath(path, i+1), Rule: "invalid expression: must be an array"}
				}
				c, err := compileRuleDepth(indexPath(path, i+1), sub, depth+1)
				if err != nil {
					return nil, err
				}
				g.Children = append(g.Children, c)
			}
			return g, nil
		}
	}
	return compileExpr(path, rules)
}

func compileExpr(path string, expr []any) (*Expr, error) {
	e := &Expr{}
	var lv, op, rv any
	hasRV := false
	if len(expr) == 4 {
		if s, _ := expr[1].(string); s != "!" {
			return nil, &FieldError{Path: indexPath(path, 1), Rule: "bad 'not' expression"}
		}
		e.Not = true
		lv, op, rv, hasRV = expr[0], expr[2], expr[3], true
	} else {
		lv = expr[0]
		if len(expr) > 1 {
			op = expr[1]
		}
		if len(expr) > 2 {
			rv, hasRV = expr[2], true
		}
	}
	name, ok := lv.(string)
	if !ok {
		return nil, &FieldError{Path: indexPath(path, 0), Rule: "invalid expression: variable name must be a string"}
	}
	e.Var = name
	opIdx := 1
	if e.Not {
		opIdx = 2
	}
	ops, isStr := op.(string)
	if op != nil && !isStr {
		return nil, &FieldError{Path: indexPath(path, opIdx), Rule: "invalid operator: must be a string"}
	}
	ops = strings.ToLower(ops)
	if !hasRV && !compareOps[ops] {
		// lua-resty-expr compatibility: [var, value] means var == value.
		if op == nil {
			return nil, &FieldError{Path: path, Rule: "invalid expression"}
		}
		rv, ops = op, "=="
		hasRV = true
	}
	if !compareOps[ops] {
		return nil, &FieldError{Path: indexPath(path, opIdx), Rule: "invalid operator '" + ops + "'"}
	}
	e.Op, e.Value = ops, rv
	vPath := indexPath(path, opIdx+1)
	switch ops {
	case "~~", "~*":
		pat, ok := rv.(string)
		if !ok {
			return nil, &FieldError{Path: vPath, Rule: "regex must be a string"}
		}
		if ops == "~*" {
			pat = "(?i)" + pat
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return nil, &FieldError{Path: vPath, Rule: "invalid regex: " + err.Error()}
		}
		e.Regex = re
	case "ipmatch":
		var list []any
		switch v := rv.(type) {
		case string:
			if v != "" {
				list = []any{v}
			}
		case []any:
			list = v
		}
		if len(list) == 0 {
			return nil, &FieldError{Path: vPath, Rule: "invalid ip address"}
		}
		for i, it := range list {
			s, _ := it.(string)
			p, ok := parseIPOrCIDR(s)
			if !ok {
				return nil, &FieldError{Path: vPath, Rule: "invalid ip address at item " + strconv.Itoa(i)}
			}
			e.Prefixes = append(e.Prefixes, p)
		}
	}
	return e, nil
}

// parseIPOrCIDR parses "1.2.3.4", "10.0.0.0/8", "::1" or "fe80::/10".
func parseIPOrCIDR(s string) (netip.Prefix, bool) {
	if a, err := netip.ParseAddr(s); err == nil && a.Zone() == "" {
		return netip.PrefixFrom(a, a.BitLen()), true
	}
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	return p.Masked(), true
}

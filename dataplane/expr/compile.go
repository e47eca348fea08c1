package expr

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
)

// ErrInvalid is wrapped by every compile error; the message names the
// position of the offending rule (e.g. `vars[1][2]`) and the rule broken.
var ErrInvalid = errors.New("expr: invalid vars expression")

// Op is a comparison operator of a leaf rule.
type Op int

// Operators, as spelled in lua-resty-expr (case-insensitive in rules).
const (
	OpEq      Op = iota // ==
	OpNe                // ~=
	OpGt                // >
	OpGe                // >=
	OpLt                // <
	OpLe                // <=
	OpRegex             // ~~ (unanchored search)
	OpRegexCI           // ~* (unanchored, case-insensitive)
	OpIn                // in
	OpHas               // has
	OpIPMatch           // ipmatch
)

var opNames = [...]string{"==", "~=", ">", ">=", "<", "<=", "~~", "~*", "in", "has", "ipmatch"}

// String returns the operator as written in rules.
func (o Op) String() string {
	if o >= 0 && int(o) < len(opNames) {
		return opNames[o]
	}
	return "unknown"
}

func parseOp(s string) (Op, bool) {
	s = strings.ToLower(s)
	for i, n := range opNames {
		if n == s {
			return Op(i), true
		}
	}
	return 0, false
}

type logic int

const (
	logicLeaf logic = iota
	logicAnd
	logicOr
	logicNotAnd
	logicNotOr
)

func parseLogic(s string) (logic, bool) {
	switch strings.ToUpper(s) {
	case "AND":
		return logicAnd, true
	case "OR":
		return logicOr, true
	case "!AND":
		return logicNotAnd, true
	case "!OR":
		return logicNotOr, true
	}
	return 0, false
}

// rhsKind is the JSON type of a leaf's right-hand side.
type rhsKind int

const (
	rhsNull rhsKind = iota
	rhsString
	rhsNumber
	rhsBool
	rhsArray
	rhsObject
)

type node struct {
	logic    logic
	children []node

	// leaf
	v       Var
	op      Op
	reverse bool
	rk      rhsKind
	str     string
	num     float64
	numOK   bool // str (or num) converts to a Lua number
	list    []string
	re      *regexp.Regexp
	ips     []netip.Prefix
}

// Expr is a compiled vars expression. The zero value and a nil *Expr match
// every request. An Expr is immutable and safe for concurrent use.
type Expr struct {
	root *node
	src  string
}

// String returns the JSON the expression was compiled from.
func (e *Expr) String() string {
	if e == nil {
		return "[]"
	}
	return e.src
}

// Compile compiles lua-resty-expr v1 rules given as JSON. An empty input,
// JSON null or an empty array yield an expression that always matches.
// Errors wrap ErrInvalid and name the position and the rule.
func Compile(raw json.RawMessage) (*Expr, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return &Expr{src: "[]"}, nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf("%w: vars: %w", ErrInvalid, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: vars: trailing data after the JSON value", ErrInvalid)
	}
	rules, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("%w: vars: must be an array", ErrInvalid)
	}
	e := &Expr{src: string(raw)}
	if len(rules) == 0 {
		return e, nil
	}
	if s, isStr := rules[0].(string); isStr {
		if _, isLogic := parseLogic(s); !isLogic {
			return nil, fmt.Errorf("%w: vars: rule should be wrapped inside brackets", ErrInvalid)
		}
	}
	n, err := compileRules(rules, "vars")
	if err != nil {
		return nil, err
	}
	e.root = &n
	return e, nil
}

// MustCompile is Compile for tests and constants; it panics on error.
func MustCompile(raw string) *Expr {
	e, err := Compile(json.RawMessage(raw))
	if err != nil {
		panic(err)
	}
	return e
}

func compileRules(rules []any, pos string) (node, error) {
	if len(rules) == 0 {
		return node{}, fmt.Errorf("%w: %s: rule too short", ErrInvalid, pos)
	}
	if _, nested := rules[0].([]any); nested {
		n := node{logic: logicAnd, children: make([]node, 0, len(rules))}
		for i, r := range rules {
			sub, ok := r.([]any)
			p := fmt.Sprintf("%s[%d]", pos, i)
			if !ok {
				return node{}, fmt.Errorf("%w: %s: must be an array (a rule or a nested expression)", ErrInvalid, p)
			}
			c, err := compileRules(sub, p)
			if err != nil {
				return node{}, err
			}
			n.children = append(n.children, c)
		}
		return n, nil
	}
	if s, ok := rules[0].(string); ok {
		if lg, isLogic := parseLogic(s); isLogic {
			if len(rules) <= 2 {
				return node{}, fmt.Errorf("%w: %s: rule too short: %q needs at least two operands", ErrInvalid, pos, s)
			}
			n := node{logic: lg, children: make([]node, 0, len(rules)-1)}
			for i := 1; i < len(rules); i++ {
				sub, ok := rules[i].([]any)
				p := fmt.Sprintf("%s[%d]", pos, i)
				if !ok {
					return node{}, fmt.Errorf("%w: %s: operand of %q must be an array", ErrInvalid, p, s)
				}
				c, err := compileRules(sub, p)
				if err != nil {
					return node{}, err
				}
				n.children = append(n.children, c)
			}
			return n, nil
		}
	}
	return compileLeaf(rules, pos)
}

func compileLeaf(r []any, pos string) (node, error) {
	if len(r) < 2 || len(r) > 4 {
		return node{}, fmt.Errorf("%w: %s: a rule is [var, op, value] or [var, \"!\", op, value], got %d elements", ErrInvalid, pos, len(r))
	}
	name, ok := r[0].(string)
	if !ok || name == "" {
		return node{}, fmt.Errorf("%w: %s[0]: variable name must be a non-empty string", ErrInvalid, pos)
	}
	n := node{logic: logicLeaf, v: ParseVar(name)}
	var opv, rhs any
	hasRHS := true
	switch len(r) {
	case 4:
		if s, _ := r[1].(string); s != "!" {
			return node{}, fmt.Errorf("%w: %s[1]: bad 'not' expression: a 4-element rule needs \"!\" here", ErrInvalid, pos)
		}
		n.reverse = true
		opv, rhs = r[2], r[3]
	case 3:
		opv, rhs = r[1], r[2]
	case 2:
		opv, hasRHS = r[1], false
	}
	ops, ok := opv.(string)
	op, known := parseOp(ops)
	if !hasRHS && (!ok || !known) {
		// Compatibility form [var, value] means [var, "==", value]; Lua
		// lowercases the value first, so a number becomes its string.
		rhs, op, known = opv, OpEq, true
		switch x := opv.(type) {
		case json.Number:
			rhs = x.String()
		case string:
			rhs = strings.ToLower(x)
		}
	} else if !ok {
		return node{}, fmt.Errorf("%w: %s: operator must be a string", ErrInvalid, pos)
	} else if !known {
		return node{}, fmt.Errorf("%w: %s: invalid operator '%s'", ErrInvalid, pos, strings.ToLower(ops))
	}
	n.op = op
	if err := n.setRHS(rhs, pos); err != nil {
		return node{}, err
	}
	return n, nil
}

func (n *node) setRHS(rhs any, pos string) error {
	switch x := rhs.(type) {
	case nil:
		n.rk = rhsNull
	case string:
		n.rk, n.str = rhsString, x
		n.num, n.numOK = luaToNumber(x)
	case json.Number:
		n.rk = rhsNumber
		f, err := x.Float64()
		if err != nil {
			return fmt.Errorf("%w: %s: value %s is not a representable number", ErrInvalid, pos, x)
		}
		n.num, n.numOK, n.str = f, true, x.String()
	case bool:
		n.rk = rhsBool
	case []any:
		n.rk = rhsArray
	default:
		n.rk = rhsObject
	}
	switch n.op {
	case OpRegex, OpRegexCI:
		if n.rk != rhsString {
			return fmt.Errorf("%w: %s: operator %s needs a string regular expression", ErrInvalid, pos, n.op)
		}
		pat := n.str
		if n.op == OpRegexCI {
			pat = "(?i)" + pat
		}
		re, err := regexp.Compile(pat)
		if err != nil {
			return fmt.Errorf("%w: %s: operator %s: bad regular expression (RE2 syntax): %w", ErrInvalid, pos, n.op, err)
		}
		n.re = re
	case OpIn:
		arr, ok := rhs.([]any)
		if !ok {
			return fmt.Errorf("%w: %s: operator in needs an array value", ErrInvalid, pos)
		}
		for _, e := range arr {
			// A Lua string never equals a number, so only string elements
			// can match a variable's value.
			if s, ok := e.(string); ok {
				n.list = append(n.list, s)
			}
		}
	case OpHas:
		if n.rk == rhsArray || n.rk == rhsObject {
			return fmt.Errorf("%w: %s: operator has needs a scalar value", ErrInvalid, pos)
		}
	case OpIPMatch:
		var list []any
		switch x := rhs.(type) {
		case string:
			list = []any{x}
		case []any:
			list = x
		default:
			return fmt.Errorf("%w: %s: operator ipmatch needs an IP/CIDR string or an array of them", ErrInvalid, pos)
		}
		if len(list) == 0 {
			return fmt.Errorf("%w: %s: operator ipmatch needs at least one IP or CIDR", ErrInvalid, pos)
		}
		for i, e := range list {
			s, ok := e.(string)
			if !ok {
				return fmt.Errorf("%w: %s: ipmatch element %d must be a string", ErrInvalid, pos, i)
			}
			p, err := ParsePrefix(s)
			if err != nil {
				return fmt.Errorf("%w: %s: ipmatch element %d: %w", ErrInvalid, pos, i, err)
			}
			n.ips = append(n.ips, p)
		}
	}
	return nil
}

// ParsePrefix parses an IP address (as a full-length prefix) or a CIDR, v4
// or v6, the way lua-resty-ipmatcher accepts them. IPv4-mapped IPv6
// addresses are unmapped so they match IPv4 clients.
func ParsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid CIDR %q: %w", s, err)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("invalid IP address %q: %w", s, err)
	}
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("invalid IP address %q: zones are not allowed", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

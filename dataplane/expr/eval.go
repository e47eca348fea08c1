package expr

import (
	"net/netip"
	"strconv"
	"strings"
)

// Match evaluates the expression against the request variables. A nil or
// empty expression matches. It does not allocate and is safe for
// concurrent use (vars itself is per request).
func (e *Expr) Match(vars Vars) bool {
	if e == nil || e.root == nil {
		return true
	}
	return e.root.eval(vars)
}

func (n *node) eval(vars Vars) bool {
	switch n.logic {
	case logicLeaf:
		return n.leaf(vars) != n.reverse
	case logicAnd:
		return n.and(vars)
	case logicOr:
		return n.or(vars)
	case logicNotAnd:
		return !n.and(vars)
	case logicNotOr:
		return !n.or(vars)
	}
	return false
}

func (n *node) and(vars Vars) bool {
	for i := range n.children {
		if !n.children[i].eval(vars) {
			return false
		}
	}
	return true
}

func (n *node) or(vars Vars) bool {
	for i := range n.children {
		if n.children[i].eval(vars) {
			return true
		}
	}
	return false
}

// leaf is lua-resty-expr's compare_val for one rule, before "!" is applied.
func (n *node) leaf(vars Vars) bool {
	val, ok := vars.Var(n.v)
	switch n.op {
	case OpEq:
		switch n.rk {
		case rhsNull:
			return !ok
		case rhsString:
			return ok && val == n.str
		case rhsNumber:
			l, lok := toNum(val, ok)
			return lok && l == n.num
		}
		return false // bool/array/object never equal a string
	case OpNe:
		switch n.rk {
		case rhsNull:
			return ok
		case rhsString:
			return !ok || val != n.str
		case rhsNumber:
			l, lok := toNum(val, ok)
			return !lok || l != n.num
		}
		return true
	case OpGt, OpGe, OpLt, OpLe:
		if !n.numOK {
			return false
		}
		l, lok := toNum(val, ok)
		if !lok {
			return false
		}
		switch n.op {
		case OpGt:
			return l > n.num
		case OpGe:
			return l >= n.num
		case OpLt:
			return l < n.num
		default:
			return l <= n.num
		}
	case OpRegex, OpRegexCI:
		return ok && n.re.MatchString(val)
	case OpIn:
		if !ok {
			return false
		}
		for _, s := range n.list {
			if s == val {
				return true
			}
		}
		return false
	case OpHas:
		if !ok || n.rk != rhsString {
			return false
		}
		if lv, isList := vars.(ListVars); isList {
			return lv.VarHas(n.v, n.str)
		}
		return false
	case OpIPMatch:
		if !ok || !ipChars(val) {
			return false
		}
		a, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(val, "["), "]"))
		if err != nil {
			return false
		}
		a = a.Unmap().WithZone("")
		for _, p := range n.ips {
			if p.Contains(a) {
				return true
			}
		}
		return false
	}
	return false
}

func toNum(s string, ok bool) (float64, bool) {
	if !ok {
		return 0, false
	}
	return luaToNumber(s)
}

// luaToNumber mimics Lua 5.1's tonumber on a string: optional surrounding
// whitespace, decimal (with exponent) or 0x hexadecimal integers. "inf",
// "nan" and Go-only syntaxes (underscores, hex floats) are not numbers.
func luaToNumber(s string) (float64, bool) {
	s = strings.Trim(s, " \t\n\r\v\f")
	if s == "" {
		return 0, false
	}
	body := s
	neg := false
	if body[0] == '-' || body[0] == '+' {
		neg = body[0] == '-'
		body = body[1:]
	}
	if len(body) > 2 && body[0] == '0' && (body[1] == 'x' || body[1] == 'X') {
		u, err := strconv.ParseUint(body[2:], 16, 64)
		if err != nil {
			return 0, false
		}
		f := float64(u)
		if neg {
			f = -f
		}
		return f, true
	}
	digits := false
	for i := 0; i < len(body); i++ {
		c := body[i]
		switch {
		case c >= '0' && c <= '9':
			digits = true
		case c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-':
		default:
			return 0, false
		}
	}
	if !digits {
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return 0, false
	}
	return f, true
}

// ipChars screens values that cannot be an IP address, so that ParseAddr
// (whose errors allocate) only sees plausible input.
func ipChars(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '.' || c == ':' || c == '[' || c == ']') {
			return false
		}
	}
	return true
}

package redirect

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"
)

// savedTable is one table of iptables-save output.
type savedTable struct {
	// chains lists every chain declared, in order.
	chains []string
	// rules maps a chain to its rule specs (after "-A CHAIN "), in order.
	rules map[string][]string
	// policy maps a chain to its policy: ACCEPT or DROP for built-in
	// chains, "-" for user-defined ones.
	policy map[string]string
}

// empty reports whether the table holds nothing: no rules, no user chain,
// every built-in chain's policy ACCEPT. Deleting such a table loses nothing.
func (st *savedTable) empty() bool {
	for _, c := range st.chains {
		if st.policy[c] != "ACCEPT" || len(st.rules[c]) > 0 {
			return false
		}
	}
	return true
}

// saved is parsed iptables-save output: table name to table.
type saved map[string]*savedTable

// parseSave parses iptables-save output. It accepts exactly the line kinds
// iptables-save prints (comments, *table, :chain, -A rules, COMMIT) and
// rejects anything else with the line number, so that a format change is
// noticed instead of misread.
func parseSave(out []byte) (saved, error) {
	s := saved{}
	var cur *savedTable
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "*"):
			name := line[1:]
			if name == "" || strings.ContainsAny(name, " \t") {
				return nil, fmt.Errorf("redirect: iptables-save line %d: bad table %q", n, line)
			}
			cur = s[name]
			if cur == nil {
				cur = &savedTable{rules: map[string][]string{}, policy: map[string]string{}}
				s[name] = cur
			}
		case line == "COMMIT":
			if cur == nil {
				return nil, fmt.Errorf("redirect: iptables-save line %d: COMMIT outside a table", n)
			}
			cur = nil
		case strings.HasPrefix(line, ":"):
			if cur == nil {
				return nil, fmt.Errorf("redirect: iptables-save line %d: chain outside a table", n)
			}
			f := strings.Fields(line[1:])
			if len(f) == 0 {
				return nil, fmt.Errorf("redirect: iptables-save line %d: empty chain name", n)
			}
			cur.chains = append(cur.chains, f[0])
			if len(f) > 1 {
				cur.policy[f[0]] = f[1]
			}
		case strings.HasPrefix(line, "-A "):
			if cur == nil {
				return nil, fmt.Errorf("redirect: iptables-save line %d: rule outside a table", n)
			}
			rest := strings.TrimSpace(line[3:])
			chain, spec, _ := strings.Cut(rest, " ")
			if chain == "" {
				return nil, fmt.Errorf("redirect: iptables-save line %d: rule without chain", n)
			}
			cur.rules[chain] = append(cur.rules[chain], strings.TrimSpace(spec))
		default:
			return nil, fmt.Errorf("redirect: iptables-save line %d: unexpected %q", n, line)
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("redirect: reading iptables-save output: %w", err)
	}
	return s, nil
}

// hasChain reports whether table t declares chain c.
func (s saved) hasChain(t, c string) bool {
	st := s[t]
	if st == nil {
		return false
	}
	for _, x := range st.chains {
		if x == c {
			return true
		}
	}
	return false
}

// ours lists our chains declared in table t.
func (s saved) ours(t string) []string {
	st := s[t]
	if st == nil {
		return nil
	}
	var out []string
	for _, c := range st.chains {
		if strings.HasPrefix(c, chainPrefix) {
			out = append(out, c)
		}
	}
	return out
}

// jumps lists the rules in chains that are not ours and whose target is one
// of our chains, as Rules.
func (s saved) jumps(t string) []Rule {
	st := s[t]
	if st == nil {
		return nil
	}
	var out []Rule
	for _, c := range st.chains {
		if strings.HasPrefix(c, chainPrefix) {
			continue
		}
		for _, spec := range st.rules[c] {
			if jumpsToUs(spec) {
				out = append(out, Rule{t, c, spec})
			}
		}
	}
	return out
}

func jumpsToUs(spec string) bool { return strings.HasPrefix(targetOf(spec), chainPrefix) }

// NormalizeSave returns iptables-save output with what changes on its own
// removed: comment lines (they carry timestamps) and packet/byte counters.
// Two NormalizeSave results are equal when the rulesets are the same.
func NormalizeSave(out []byte) string {
	var sb strings.Builder
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimRight(line, " \r")
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.HasPrefix(line, ":") {
			if i := strings.LastIndex(line, " ["); i > 0 && strings.HasSuffix(line, "]") {
				line = line[:i] + " [0:0]"
			}
		}
		sb.WriteString(line)
		sb.WriteByte('\n')
	}
	return sb.String()
}

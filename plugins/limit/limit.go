// Package limit holds APISIX's local rate-limiting plugins: limit-req
// (leaky bucket), limit-count (fixed window) and limit-conn (concurrent
// requests). State lives in this process only (APISIX's `policy: local`);
// it is kept per plugin scope (route, service, global rule) and per key,
// and survives snapshot rebuilds while the configuration is unchanged.
//
// It owns the limiters and the plugins' schemas; it does not own the
// variables used as keys (the data plane resolves them through Ctx.Var).
package limit

import (
	"encoding/json"
	"strings"
	"sync"

	"github.com/meshagent/meshagent/plugins"
)

// keySpec says how a request's limiting key is made (APISIX key_type).
type keySpec struct {
	kind  int // 0 var, 1 var_combination, 2 constant
	name  string
	parts []tmplPart
}

type tmplPart struct {
	lit   string
	isVar bool
}

// parseKey validates key_type and key as APISIX does.
func parseKey(keyType, key string) (keySpec, error) {
	switch keyType {
	case "", "var":
		if key == "" {
			key = "remote_addr"
		}
		return keySpec{kind: 0, name: key}, nil
	case "var_combination":
		if key == "" {
			return keySpec{}, plugins.Invalid("key", "required with key_type var_combination")
		}
		return keySpec{kind: 1, parts: parseTemplate(key)}, nil
	case "constant":
		return keySpec{kind: 2, name: key}, nil
	}
	return keySpec{}, plugins.Invalid("key_type", `must be one of "var", "var_combination", "constant"`)
}

// parseTemplate splits "$remote_addr $http_x" into literal and var parts.
func parseTemplate(s string) []tmplPart {
	var out []tmplPart
	for len(s) > 0 {
		i := strings.IndexByte(s, '$')
		if i < 0 {
			out = append(out, tmplPart{lit: s})
			break
		}
		if i > 0 {
			out = append(out, tmplPart{lit: s[:i]})
		}
		s = s[i+1:]
		j := 0
		for j < len(s) && (s[j] == '_' || s[j] == '-' || s[j] >= '0' && s[j] <= '9' || s[j] >= 'a' && s[j] <= 'z' || s[j] >= 'A' && s[j] <= 'Z') {
			j++
		}
		out = append(out, tmplPart{lit: s[:j], isVar: true})
		s = s[j:]
	}
	return out
}

// resolve computes the key for a request. An empty key falls back to
// remote_addr, as APISIX does.
func (k *keySpec) resolve(c plugins.Ctx) string {
	var v string
	switch k.kind {
	case 0:
		v, _ = c.Var(k.name)
		if k.name == "consumer_name" && v == "" {
			if cc, ok := c.(plugins.ConsumerCtx); ok && cc.Consumer() != nil {
				v = cc.Consumer().Username
			}
		}
	case 1:
		var b strings.Builder
		any := false
		for _, p := range k.parts {
			if !p.isVar {
				b.WriteString(p.lit)
				continue
			}
			if s, ok := c.Var(p.lit); ok && s != "" {
				any = true
				b.WriteString(s)
			}
		}
		if any {
			v = b.String()
		}
	case 2:
		v = k.name
	}
	if v == "" {
		v, _ = c.Var("remote_addr")
	}
	return v
}

// scoped keeps one state value per (plugin, scope, config) with reference
// counts, so a rebuilt snapshot with the same config reuses the state and
// it is freed when the last snapshot using it is closed.
type scoped[T any] struct {
	mu   sync.Mutex
	vals map[string]*ref[T]
}

type ref[T any] struct {
	n int
	v T
}

func (s *scoped[T]) acquire(key string, mk func() T) T {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.vals == nil {
		s.vals = map[string]*ref[T]{}
	}
	r, ok := s.vals[key]
	if !ok {
		r = &ref[T]{v: mk()}
		s.vals[key] = r
	}
	r.n++
	return r.v
}

func (s *scoped[T]) release(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r, ok := s.vals[key]; ok {
		if r.n--; r.n <= 0 {
			delete(s.vals, key)
		}
	}
}

// scopeKey names the state of one filter instance. Without a scope from
// the Builder, each instance gets its own state.
func scopeKey(b plugins.Builder, plugin string, cfg json.RawMessage, unique any) string {
	if s, ok := b.(plugins.ScopeSource); ok {
		return plugin + "|" + s.Scope() + "|" + string(cfg)
	}
	return plugin + "|" + ptrString(unique)
}

// rejected answers a limited request as APISIX does: rejected_code, with
// {"error_msg": rejected_msg} when a message is configured.
func rejected(c plugins.Ctx, code int, msg string) plugins.Status {
	if msg == "" {
		c.Respond(code, nil)
		return plugins.Stop
	}
	b, _ := json.Marshal(struct {
		ErrorMsg string `json:"error_msg"`
	}{msg})
	c.SetResponseHeader("Content-Type", "application/json")
	c.Respond(code, b)
	return plugins.Stop
}

func checkRejectedCode(code int) error {
	if code < 200 || code > 599 {
		return plugins.Invalid("rejected_code", "must be an integer from 200 to 599")
	}
	return nil
}

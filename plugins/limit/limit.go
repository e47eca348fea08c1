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
	"sync"

	"github.com/meshagent/meshagent/plugins"
)

// keySpec says how a request's limiting key is made (APISIX key_type).
type keySpec struct {
	kind int // 0 var, 1 var_combination, 2 constant
	name string
	tmpl plugins.Template
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
		return keySpec{kind: 1, tmpl: plugins.ParseTemplate(key)}, nil
	case "constant":
		return keySpec{kind: 2, name: key}, nil
	}
	return keySpec{}, plugins.Invalid("key_type", `must be one of "var", "var_combination", "constant"`)
}

// resolve computes the key for a request. An empty key (for
// var_combination: no variable set) falls back to remote_addr, as APISIX
// does.
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
		set := false
		r := k.tmpl.Render(func(name string) (string, bool) {
			s, ok := c.Var(name)
			set = set || ok && s != ""
			return s, ok
		})
		if set {
			v = r
		}
	case 2:
		v = k.name
	}
	if v == "" {
		v, _ = c.Var("remote_addr")
	}
	return v
}

// common are the fields every limit plugin shares, embedded in each
// plugin's config.
type common struct {
	Key              string `json:"key,omitempty"`
	KeyType          string `json:"key_type,omitempty"`
	RejectedCode     *int   `json:"rejected_code,omitempty"`
	RejectedMsg      string `json:"rejected_msg,omitempty"`
	Policy           string `json:"policy,omitempty"`
	AllowDegradation bool   `json:"allow_degradation,omitempty"`
}

// compile validates the shared fields: the policy (local only), the
// rejected code (default 503) and the key (required unless keyOptional or
// the key type is constant).
func (c *common) compile(keyOptional bool) (keySpec, int, error) {
	if c.Policy != "" && c.Policy != "local" {
		return keySpec{}, 0, plugins.Invalid("policy", `only "local" is supported by meshagent (got "`+c.Policy+`")`)
	}
	code := 503
	if c.RejectedCode != nil {
		code = *c.RejectedCode
	}
	if code < 200 || code > 599 {
		return keySpec{}, 0, plugins.Invalid("rejected_code", "must be an integer from 200 to 599")
	}
	if c.Key == "" && !keyOptional && c.KeyType != "constant" {
		return keySpec{}, 0, plugins.Invalid("key", "required")
	}
	k, err := parseKey(c.KeyType, c.Key)
	return k, code, err
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

// Package consumerrestriction is APISIX's consumer-restriction plugin: it
// allows or denies requests by the authenticated consumer's name or group,
// or by the route or service id, and can restrict methods per consumer.
// It runs after an auth plugin attached the consumer.
package consumerrestriction

import (
	"encoding/json"
	"slices"

	"github.com/meshagent/meshagent/plugins"
)

// Name and Priority are APISIX's.
const (
	Name     = "consumer-restriction"
	Priority = 2400
)

// Config is the plugin's schema.
type Config struct {
	Type             string           `json:"type,omitempty"`
	Whitelist        []string         `json:"whitelist,omitempty"`
	Blacklist        []string         `json:"blacklist,omitempty"`
	RejectedCode     *int             `json:"rejected_code,omitempty"`
	RejectedMsg      string           `json:"rejected_msg,omitempty"`
	AllowedByMethods []MethodsForUser `json:"allowed_by_methods,omitempty"`
}

// MethodsForUser limits one consumer to some methods.
type MethodsForUser struct {
	User    string   `json:"user"`
	Methods []string `json:"methods"`
}

func init() {
	plugins.Register(plugins.Plugin{Name: Name, Priority: Priority, New: New})
}

type filter struct {
	typ        string
	white      []string
	black      []string
	code       int
	msg        string
	methodsFor map[string][]string
}

var methods = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"}

// New validates cfg and builds the filter.
func New(raw json.RawMessage, _ plugins.Builder) (any, error) {
	c := Config{Type: "consumer_name"}
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	switch c.Type {
	case "consumer_name", "consumer_group_id", "service_id", "route_id":
	default:
		return nil, plugins.Invalid("type", `must be one of "consumer_name", "consumer_group_id", "service_id", "route_id"`)
	}
	if len(c.Whitelist) == 0 && len(c.Blacklist) == 0 && len(c.AllowedByMethods) == 0 {
		return nil, plugins.Invalid("whitelist|blacklist|allowed_by_methods", "one of them is required")
	}
	f := &filter{typ: c.Type, white: c.Whitelist, black: c.Blacklist, code: 403, msg: c.RejectedMsg}
	if c.RejectedCode != nil {
		if *c.RejectedCode < 200 {
			return nil, plugins.Invalid("rejected_code", "must be >= 200")
		}
		f.code = *c.RejectedCode
	}
	if f.msg == "" {
		f.msg = "The " + c.Type + " is forbidden."
	}
	if len(c.AllowedByMethods) > 0 {
		f.methodsFor = map[string][]string{}
		for _, m := range c.AllowedByMethods {
			for _, x := range m.Methods {
				if !slices.Contains(methods, x) {
					return nil, plugins.Invalid("allowed_by_methods.methods", "unknown method "+x)
				}
			}
			f.methodsFor[m.User] = m.Methods
		}
	}
	return f, nil
}

// Access checks the request's identity.
func (f *filter) Access(c plugins.Ctx) plugins.Status {
	var cons *plugins.Consumer
	if cc, ok := c.(plugins.ConsumerCtx); ok {
		cons = cc.Consumer()
	}
	var v string
	switch f.typ {
	case "consumer_name":
		if cons != nil {
			v = cons.Username
		}
	case "consumer_group_id":
		if cons != nil {
			v = cons.GroupID
		}
	case "route_id":
		v = c.RouteID()
	case "service_id":
		v, _ = c.Var("service_id")
	}
	if v == "" {
		return plugins.RespondMessage(c, 401, "Missing authentication or identity verification.")
	}
	if len(f.black) > 0 && slices.Contains(f.black, v) {
		return plugins.RespondMessage(c, f.code, f.msg)
	}
	if len(f.white) > 0 && !slices.Contains(f.white, v) {
		return plugins.RespondMessage(c, f.code, f.msg)
	}
	if ms, ok := f.methodsFor[v]; ok && !slices.Contains(ms, string(c.Method())) {
		return plugins.RespondMessage(c, f.code, f.msg)
	}
	return plugins.Continue
}

var _ plugins.Accessor = (*filter)(nil)

package auth

import (
	"encoding/json"

	"github.com/meshagent/meshagent/plugins"
)

// key-auth: the consumer's key comes from a header (default "apikey") or,
// failing that, a query argument (default "apikey").
const (
	KeyAuthName     = "key-auth"
	KeyAuthPriority = 2500
)

// KeyAuthConfig is key-auth's route schema.
type KeyAuthConfig struct {
	Header          string `json:"header,omitempty"`
	Query           string `json:"query,omitempty"`
	HideCredentials bool   `json:"hide_credentials,omitempty"`
}

// KeyAuthCredential is key-auth's consumer schema.
type KeyAuthCredential struct {
	Key string `json:"key"`
}

func init() {
	plugins.Register(plugins.Plugin{Name: KeyAuthName, Priority: KeyAuthPriority, New: newKeyAuth, Auth: true})
}

type keyAuth struct {
	header, query string
	hide          bool
	keys          map[string]*plugins.Consumer
}

func newKeyAuth(raw json.RawMessage, b plugins.Builder) (any, error) {
	c := KeyAuthConfig{Header: "apikey", Query: "apikey"}
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	cs, err := consumers(b, KeyAuthName, func(raw []byte) (KeyAuthCredential, error) {
		var k KeyAuthCredential
		if err := plugins.Decode(raw, &k); err != nil {
			return k, err
		}
		if k.Key == "" {
			return k, plugins.Invalid("key", "required")
		}
		return k, nil
	})
	if err != nil {
		return nil, err
	}
	f := &keyAuth{header: c.Header, query: c.Query, hide: c.HideCredentials, keys: make(map[string]*plugins.Consumer, len(cs))}
	for _, e := range cs {
		f.keys[e.cred.Key] = e.consumer
	}
	return f, nil
}

// Rewrite authenticates (APISIX runs auth plugins in rewrite).
func (f *keyAuth) Rewrite(c plugins.Ctx) plugins.Status {
	key := c.Header(f.header)
	fromHeader := key != nil
	var k string
	if fromHeader {
		k = string(key)
	} else if v, ok := c.Var("arg_" + f.query); ok {
		k = v
	} else {
		return plugins.RespondMessage(c, 401, "Missing API key in request")
	}
	cons, ok := f.keys[k]
	if !ok {
		return plugins.RespondMessage(c, 401, "Invalid API key in request")
	}
	if f.hide {
		if fromHeader {
			c.DelHeader(f.header)
		} else {
			c.SetQuery(removeArg(c.Query(), f.query))
		}
	}
	attach(c, cons)
	return plugins.Continue
}

var _ plugins.Rewriter = (*keyAuth)(nil)

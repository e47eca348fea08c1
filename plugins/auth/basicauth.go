package auth

import (
	"bytes"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"

	"github.com/meshagent/meshagent/plugins"
)

// basic-auth: HTTP Basic credentials checked against consumers' username
// and password.
const (
	BasicAuthName     = "basic-auth"
	BasicAuthPriority = 2520
)

// BasicAuthConfig is basic-auth's route schema.
type BasicAuthConfig struct {
	HideCredentials bool `json:"hide_credentials,omitempty"`
}

// BasicAuthCredential is basic-auth's consumer schema.
type BasicAuthCredential struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func init() {
	plugins.Register(plugins.Plugin{Name: BasicAuthName, Priority: BasicAuthPriority, New: newBasicAuth, Auth: true})
}

type basicUser struct {
	password []byte
	consumer *plugins.Consumer
}

type basicAuth struct {
	hide  bool
	users map[string]basicUser
}

func newBasicAuth(raw json.RawMessage, b plugins.Builder) (any, error) {
	var c BasicAuthConfig
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	cs, err := consumers(b, BasicAuthName, func(raw []byte) (BasicAuthCredential, error) {
		var k BasicAuthCredential
		if err := plugins.Decode(raw, &k); err != nil {
			return k, err
		}
		if k.Username == "" {
			return k, plugins.Invalid("username", "required")
		}
		if k.Password == "" {
			return k, plugins.Invalid("password", "required")
		}
		return k, nil
	})
	if err != nil {
		return nil, err
	}
	f := &basicAuth{hide: c.HideCredentials, users: make(map[string]basicUser, len(cs))}
	for _, e := range cs {
		f.users[e.cred.Username] = basicUser{[]byte(e.cred.Password), e.consumer}
	}
	return f, nil
}

// Rewrite authenticates.
func (f *basicAuth) Rewrite(c plugins.Ctx) plugins.Status {
	h := c.Header("Authorization")
	if h == nil {
		c.SetResponseHeader("WWW-Authenticate", "Basic realm='.'")
		return plugins.RespondMessage(c, 401, "Missing authorization in request")
	}
	user, pass, ok := parseBasic(h)
	if !ok {
		return plugins.RespondMessage(c, 401, "Invalid authorization in request")
	}
	u, found := f.users[user]
	if !found || subtle.ConstantTimeCompare(u.password, pass) != 1 {
		return plugins.RespondMessage(c, 401, "Invalid user authorization")
	}
	if f.hide {
		c.DelHeader("Authorization")
	}
	attach(c, u.consumer)
	return plugins.Continue
}

// parseBasic extracts user and password from "Basic base64(user:pass)",
// dropping whitespace inside both as APISIX does.
func parseBasic(h []byte) (string, []byte, bool) {
	i := bytes.Index(h, []byte("Basic"))
	if i < 0 || i+6 > len(h) || (h[i+5] != ' ' && h[i+5] != '\t') {
		return "", nil, false
	}
	dec, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(h[i+6:])))
	if err != nil {
		return "", nil, false
	}
	user, pass, ok := bytes.Cut(dec, []byte(":"))
	if !ok {
		return "", nil, false
	}
	return string(stripSpace(user)), stripSpace(pass), true
}

func stripSpace(b []byte) []byte {
	return bytes.Join(bytes.Fields(b), nil)
}

var _ plugins.Rewriter = (*basicAuth)(nil)

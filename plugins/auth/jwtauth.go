package auth

import (
	"crypto"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/meshagent/meshagent/plugins"
)

// jwt-auth: a signed JWT whose key claim names the consumer, verified with
// that consumer's secret (HS256, HS512) or public key (RS256, ES256).
const (
	JWTAuthName     = "jwt-auth"
	JWTAuthPriority = 2510
)

// JWTAuthConfig is jwt-auth's route schema: where the token is looked for
// (header, then query argument, then cookie).
type JWTAuthConfig struct {
	Header          string `json:"header,omitempty"`
	Query           string `json:"query,omitempty"`
	Cookie          string `json:"cookie,omitempty"`
	HideCredentials bool   `json:"hide_credentials,omitempty"`
	KeyClaimName    string `json:"key_claim_name,omitempty"`
	StoreInCtx      bool   `json:"store_in_ctx,omitempty"`
}

// JWTAuthCredential is jwt-auth's consumer schema.
type JWTAuthCredential struct {
	Key                 string `json:"key"`
	Secret              string `json:"secret,omitempty"`
	PublicKey           string `json:"public_key,omitempty"`
	Algorithm           string `json:"algorithm,omitempty"`
	Exp                 int    `json:"exp,omitempty"`
	Base64Secret        bool   `json:"base64_secret,omitempty"`
	LifetimeGracePeriod int    `json:"lifetime_grace_period,omitempty"`
}

func init() {
	plugins.Register(plugins.Plugin{Name: JWTAuthName, Priority: JWTAuthPriority, New: newJWTAuth, Auth: true})
}

type jwtUser struct {
	name     string // the consumer's key claim value
	alg      string
	key      any // []byte for HS*, crypto.PublicKey otherwise
	leeway   time.Duration
	consumer *plugins.Consumer
}

type jwtAuth struct {
	cfg   JWTAuthConfig
	users map[string]*jwtUser
}

func decodeJWTCredential(raw []byte) (*jwtUser, error) {
	k := JWTAuthCredential{Algorithm: "HS256", Exp: 86400}
	if err := plugins.Decode(raw, &k); err != nil {
		return nil, err
	}
	if k.Key == "" {
		return nil, plugins.Invalid("key", "required")
	}
	if k.LifetimeGracePeriod < 0 {
		return nil, plugins.Invalid("lifetime_grace_period", "must be >= 0")
	}
	u := &jwtUser{name: k.Key, alg: k.Algorithm, leeway: time.Duration(k.LifetimeGracePeriod) * time.Second}
	switch k.Algorithm {
	case "HS256", "HS512":
		if k.Secret == "" {
			return nil, plugins.Invalid("secret", "required for "+k.Algorithm)
		}
		secret := []byte(k.Secret)
		if k.Base64Secret {
			b, err := base64.StdEncoding.DecodeString(k.Secret)
			if err != nil {
				return nil, plugins.Invalid("secret", "base64_secret is true but secret is not base64")
			}
			secret = b
		}
		u.key = secret
	case "RS256", "ES256":
		if k.PublicKey == "" {
			return nil, plugins.Invalid("public_key", "required for "+k.Algorithm)
		}
		pub, err := parsePublicKey(k.PublicKey)
		if err != nil {
			return nil, plugins.Invalid("public_key", err.Error())
		}
		u.key = pub
	default:
		return nil, plugins.Invalid("algorithm", `must be one of "HS256", "HS512", "RS256", "ES256"`)
	}
	return u, nil
}

func parsePublicKey(p string) (crypto.PublicKey, error) {
	blk, _ := pem.Decode([]byte(p))
	if blk == nil {
		return nil, errors.New("not a PEM public key")
	}
	if pub, err := x509.ParsePKIXPublicKey(blk.Bytes); err == nil {
		return pub, nil
	}
	if pub, err := x509.ParsePKCS1PublicKey(blk.Bytes); err == nil {
		return pub, nil
	}
	if cert, err := x509.ParseCertificate(blk.Bytes); err == nil {
		return cert.PublicKey, nil
	}
	return nil, errors.New("cannot parse the PEM block as a public key")
}

func newJWTAuth(raw json.RawMessage, b plugins.Builder) (any, error) {
	c := JWTAuthConfig{Header: "authorization", Query: "jwt", Cookie: "jwt", KeyClaimName: "key"}
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	cs, err := consumers(b, JWTAuthName, decodeJWTCredential)
	if err != nil {
		return nil, err
	}
	f := &jwtAuth{cfg: c, users: make(map[string]*jwtUser, len(cs))}
	for _, e := range cs {
		e.cred.consumer = e.consumer
		f.users[e.cred.name] = e.cred
	}
	return f, nil
}

// token finds the JWT: header (an optional "Bearer " prefix stripped), then
// query argument, then cookie.
func (f *jwtAuth) token(c plugins.Ctx) (tok string, from int) {
	if h := c.Header(f.cfg.Header); len(h) > 0 {
		s := string(h)
		if len(s) > 7 && strings.EqualFold(s[:7], "bearer ") {
			s = s[7:]
		}
		return s, 1
	}
	if v, ok := c.Var("arg_" + f.cfg.Query); ok && v != "" {
		return v, 2
	}
	if v, ok := c.Var("cookie_" + f.cfg.Cookie); ok && v != "" {
		return v, 3
	}
	return "", 0
}

// Rewrite authenticates.
func (f *jwtAuth) Rewrite(c plugins.Ctx) plugins.Status {
	tok, from := f.token(c)
	if from == 0 {
		return plugins.RespondMessage(c, 401, "Missing JWT token in request")
	}
	claims := jwt.MapClaims{}
	if _, _, err := jwt.NewParser().ParseUnverified(tok, claims); err != nil {
		return plugins.RespondMessage(c, 401, "JWT token invalid")
	}
	key, _ := claims[f.cfg.KeyClaimName].(string)
	if key == "" {
		return plugins.RespondMessage(c, 401, "missing user key in JWT token")
	}
	u, ok := f.users[key]
	if !ok {
		return plugins.RespondMessage(c, 401, "Invalid user key in JWT token")
	}
	p := jwt.NewParser(jwt.WithValidMethods([]string{u.alg}), jwt.WithLeeway(u.leeway))
	if _, err := p.Parse(tok, func(*jwt.Token) (any, error) { return u.key, nil }); err != nil {
		return plugins.RespondMessage(c, 401, "failed to verify jwt")
	}
	if f.cfg.HideCredentials && from == 1 {
		c.DelHeader(f.cfg.Header)
	} else if f.cfg.HideCredentials && from == 2 {
		c.SetQuery(removeArg(c.Query(), f.cfg.Query))
	}
	attach(c, u.consumer)
	return plugins.Continue
}

var _ plugins.Rewriter = (*jwtAuth)(nil)

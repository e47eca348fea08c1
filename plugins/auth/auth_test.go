package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/auth"
	_ "github.com/meshagent/meshagent/plugins/consumerrestriction"
	_ "github.com/meshagent/meshagent/plugins/limit"
	_ "github.com/meshagent/meshagent/plugins/proxyrewrite"
	_ "github.com/meshagent/meshagent/plugins/responserewrite"
)

type check struct {
	name    string
	path    string
	headers []string
	status  int
	body    string // substring
}

func run(t *testing.T, e *plugintest.Env, cases []check) {
	t.Helper()
	for _, c := range cases {
		r := e.Do("GET", c.path, c.headers...)
		if r.Status != c.status || !strings.Contains(r.Body, c.body) {
			t.Errorf("%s: %d %q, want %d %q", c.name, r.Status, r.Body, c.status, c.body)
		}
	}
}

func TestKeyAuth(t *testing.T) {
	e := plugintest.New(t)
	e.Consumer("jack", `{"key-auth":{"key":"k-jack"}}`)
	e.Consumer("rose", `{"key-auth":{"key":"k-rose"}}`)
	e.Route("ka", "/ka", `{"key-auth":{}}`)
	e.Route("hide", "/hide", `{"key-auth":{"header":"x-key","query":"k","hide_credentials":true}}`)
	e.Route("only-jack", "/only-jack", `{"key-auth":{},"consumer-restriction":{"whitelist":["jack"]}}`)
	run(t, e, []check{
		{"missing", "/ka", nil, 401, `{"message":"Missing API key in request"}`},
		{"invalid", "/ka", []string{"apikey: nope"}, 401, `{"message":"Invalid API key in request"}`},
		{"header", "/ka", []string{"apikey: k-jack"}, 200, `"path":"/ka"`},
		{"query", "/ka?apikey=k-rose", nil, 200, `"path":"/ka"`},
		{"restriction allows", "/only-jack", []string{"apikey: k-jack"}, 200, `"path":"/only-jack"`},
		{"restriction denies", "/only-jack", []string{"apikey: k-rose"}, 403, `{"message":"The consumer_name is forbidden."}`},
	})
	r := e.Do("GET", "/hide?k=k-jack&keep=1")
	var got plugintest.Echoed
	r.JSON(t, &got)
	if r.Status != 200 || got.Query != "keep=1" {
		t.Errorf("hide_credentials (query): %d query %q", r.Status, got.Query)
	}
	r = e.Do("GET", "/hide", "x-key: k-rose")
	r.JSON(t, &got)
	if r.Status != 200 || got.Headers["X-Key"] != nil {
		t.Errorf("hide_credentials (header): %d %v", r.Status, got.Headers)
	}
	// A consumer with a bad credential is rejected naming it and the field;
	// the routes keep serving with the consumers already accepted.
	e.Consumer("bad", `{"key-auth":{"kye":"x"}}`)
	run(t, e, []check{{"still serving", "/ka", []string{"apikey: k-jack"}, 200, `"path":"/ka"`}})
}

func TestBasicAuth(t *testing.T) {
	e := plugintest.New(t)
	e.Consumer("foo", `{"basic-auth":{"username":"foo","password":"bar"}}`)
	e.Route("ba", "/ba", `{"basic-auth":{"hide_credentials":true}}`)
	basic := func(u, p string) string {
		return "Authorization: Basic " + base64.StdEncoding.EncodeToString([]byte(u+":"+p))
	}
	run(t, e, []check{
		{"missing", "/ba", nil, 401, `{"message":"Missing authorization in request"}`},
		{"garbage", "/ba", []string{"Authorization: Basic !!!"}, 401, `{"message":"Invalid authorization in request"}`},
		{"wrong password", "/ba", []string{basic("foo", "baz")}, 401, `{"message":"Invalid user authorization"}`},
		{"unknown user", "/ba", []string{basic("nobody", "bar")}, 401, `{"message":"Invalid user authorization"}`},
		{"ok", "/ba", []string{basic("foo", "bar")}, 200, `"path":"/ba"`},
	})
	if r := e.Do("GET", "/ba"); r.Header.Get("WWW-Authenticate") != "Basic realm='.'" {
		t.Errorf("WWW-Authenticate = %q", r.Header.Get("WWW-Authenticate"))
	}
	r := e.Do("GET", "/ba", basic("foo", "bar"))
	var got plugintest.Echoed
	r.JSON(t, &got)
	if got.Headers["Authorization"] != nil {
		t.Errorf("credentials not hidden: %v", got.Headers)
	}
}

func TestJWTAuth(t *testing.T) {
	e := plugintest.New(t)
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(&key.PublicKey)
	pub := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	pubJSON, _ := json.Marshal(pub)
	e.Consumer("hs", `{"jwt-auth":{"key":"user-hs","secret":"s3cret"}}`)
	e.Consumer("rs", `{"jwt-auth":{"key":"user-rs","algorithm":"RS256","public_key":`+string(pubJSON)+`}}`)
	e.Route("jwt", "/jwt", `{"jwt-auth":{}}`)

	sign := func(m jwt.SigningMethod, k any, claims jwt.MapClaims) string {
		s, err := jwt.NewWithClaims(m, claims).SignedString(k)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	exp := time.Now().Add(time.Hour).Unix()
	hs := sign(jwt.SigningMethodHS256, []byte("s3cret"), jwt.MapClaims{"key": "user-hs", "exp": exp})
	rs := sign(jwt.SigningMethodRS256, key, jwt.MapClaims{"key": "user-rs", "exp": exp})
	wrongSecret := sign(jwt.SigningMethodHS256, []byte("nope"), jwt.MapClaims{"key": "user-hs", "exp": exp})
	expired := sign(jwt.SigningMethodHS256, []byte("s3cret"), jwt.MapClaims{"key": "user-hs", "exp": time.Now().Add(-time.Hour).Unix()})
	unknown := sign(jwt.SigningMethodHS256, []byte("s3cret"), jwt.MapClaims{"key": "who", "exp": exp})
	noKey := sign(jwt.SigningMethodHS256, []byte("s3cret"), jwt.MapClaims{"exp": exp})
	// HS256 token presented for the RS256 consumer: algorithm confusion.
	confused := sign(jwt.SigningMethodHS256, []byte(pub), jwt.MapClaims{"key": "user-rs", "exp": exp})
	run(t, e, []check{
		{"missing", "/jwt", nil, 401, `{"message":"Missing JWT token in request"}`},
		{"garbage", "/jwt", []string{"Authorization: Bearer abc"}, 401, `{"message":"JWT token invalid"}`},
		{"hs256 header", "/jwt", []string{"Authorization: Bearer " + hs}, 200, `"path":"/jwt"`},
		{"hs256 query", "/jwt?jwt=" + hs, nil, 200, `"path":"/jwt"`},
		{"hs256 cookie", "/jwt", []string{"Cookie: jwt=" + hs}, 200, `"path":"/jwt"`},
		{"rs256", "/jwt", []string{"Authorization: " + rs}, 200, `"path":"/jwt"`},
		{"wrong secret", "/jwt", []string{"Authorization: " + wrongSecret}, 401, `{"message":"failed to verify jwt"}`},
		{"expired", "/jwt", []string{"Authorization: " + expired}, 401, `{"message":"failed to verify jwt"}`},
		{"unknown key", "/jwt", []string{"Authorization: " + unknown}, 401, `{"message":"Invalid user key in JWT token"}`},
		{"no key claim", "/jwt", []string{"Authorization: " + noKey}, 401, `{"message":"missing user key in JWT token"}`},
		{"alg confusion", "/jwt", []string{"Authorization: " + confused}, 401, `{"message":"failed to verify jwt"}`},
	})
}

// TestConsumerPlugins checks APISIX's merge: once authenticated, a
// consumer's own plugins (and its group's) join the route's, replacing a
// route plugin of the same name; their rewrite phase runs too.
func TestConsumerPlugins(t *testing.T) {
	e := plugintest.New(t)
	e.Put("/apisix/consumer_groups/gold", `{"plugins":{"response-rewrite":{"headers":{"set":{"X-Tier":"gold"}}}}}`)
	e.Consumer("jack", `{"key-auth":{"key":"k-jack"},"limit-count":{"count":1,"time_window":60,"key":"remote_addr","rejected_code":429},"proxy-rewrite":{"headers":{"set":{"X-Consumer":"jack"}}}}`)
	e.Put("/apisix/consumers/rose", `{"username":"rose","group_id":"gold","plugins":{"key-auth":{"key":"k-rose"}}}`)
	e.Route("r", "/r", `{"key-auth":{},"limit-count":{"count":100,"time_window":60,"key":"remote_addr","rejected_code":429}}`)

	r := e.Do("GET", "/r", "apikey: k-jack")
	var got plugintest.Echoed
	r.JSON(t, &got)
	if r.Status != 200 || len(got.Headers["X-Consumer"]) != 1 || r.Header.Get("X-Ratelimit-Limit") != "1" {
		t.Fatalf("jack: %d %v %v", r.Status, got.Headers, r.Header)
	}
	if r := e.Do("GET", "/r", "apikey: k-jack"); r.Status != 429 {
		t.Fatalf("jack's own limit not applied: %d", r.Status)
	}
	for i := 0; i < 3; i++ {
		r := e.Do("GET", "/r", "apikey: k-rose")
		if r.Status != 200 || r.Header.Get("X-Ratelimit-Limit") != "100" || r.Header.Get("X-Tier") != "gold" {
			t.Fatalf("rose %d: %d %v", i, r.Status, r.Header)
		}
	}
	// An invalid update of a consumer is rejected naming the field; its
	// last good version stays in force (jack is still limited to 1).
	e.Consumer("jack", `{"key-auth":{"key":"k-jack"},"limit-count":{"count":0}}`)
	if r := e.Do("GET", "/r", "apikey: k-jack"); r.Status != 429 {
		t.Fatalf("jack after a rejected update: %d, want 429 from his last good config", r.Status)
	}
	// A new consumer that never compiled is left out: fail closed.
	e.Consumer("mallory", `{"key-auth":{"key":"k-mal"},"limit-count":{"count":0}}`)
	if r := e.Do("GET", "/r", "apikey: k-mal"); r.Status != 401 {
		t.Fatalf("never-compiled consumer authenticates: %d", r.Status)
	}
	if r := e.Do("GET", "/r", "apikey: k-rose"); r.Status != 200 {
		t.Fatalf("rose after jack's rejection: %d", r.Status)
	}
	if !strings.Contains(e.Logs(), "count") {
		t.Fatalf("rejection does not name the field: %s", e.Logs())
	}
}

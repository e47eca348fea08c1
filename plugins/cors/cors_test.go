package cors_test

import (
	"testing"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/cors"
)

func TestCORS(t *testing.T) {
	e := plugintest.New(t)
	e.Route("any", "/any", `{"cors":{}}`)
	e.Route("list", "/list", `{"cors":{"allow_origins":"http://a.example,http://b.example","allow_methods":"GET,POST","allow_headers":"x-a","expose_headers":"x-b","max_age":60,"allow_credential":true}}`)
	e.Route("re", "/re", `{"cors":{"allow_origins":"http://none","allow_origins_by_regex":["^http://.*\\.re\\.example$"]}}`)

	r := e.Do("GET", "/any", "Origin: http://x.example")
	if r.Status != 200 || r.Header.Get("Access-Control-Allow-Origin") != "*" ||
		r.Header.Get("Access-Control-Allow-Methods") != "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE" ||
		r.Header.Get("Access-Control-Max-Age") != "5" || r.Header.Get("X-Backend") != "echo" {
		t.Errorf("any: %d %v", r.Status, r.Header)
	}
	r = e.Do("OPTIONS", "/list", "Origin: http://b.example", "Access-Control-Request-Method: POST")
	if r.Status != 200 || r.Header.Get("Access-Control-Allow-Origin") != "http://b.example" || r.Header.Get("Vary") != "Origin" ||
		r.Header.Get("Access-Control-Allow-Credentials") != "true" || r.Header.Get("Access-Control-Max-Age") != "60" ||
		r.Header.Get("X-Backend") != "" {
		t.Errorf("preflight: %d %v", r.Status, r.Header)
	}
	r = e.Do("GET", "/list", "Origin: http://evil.example")
	if r.Status != 200 || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("disallowed origin got CORS headers: %v", r.Header)
	}
	r = e.Do("GET", "/re", "Origin: http://api.re.example")
	if r.Header.Get("Access-Control-Allow-Origin") != "http://api.re.example" {
		t.Errorf("regex origin: %v", r.Header)
	}
	e.Rejected("bad", "/bad", `{"cors":{"allow_credential":true}}`, "allow_origins")
	e.Rejected("bad2", "/bad2", `{"cors":{"allow_origins_by_regex":["("]}}`, "allow_origins_by_regex[0]")
}

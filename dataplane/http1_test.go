package dataplane

import (
	"strings"
	"testing"
)

func TestHTTP1Proxy(t *testing.T) {
	e := newEnv(t, nil)
	b1 := backend(t, "b1")
	e.put("/apisix/upstreams/u1", `{"nodes":`+nodesJSON(b1)+`,"type":"roundrobin"}`)
	e.put("/apisix/routes/r1", `{"uri":"/hello*","upstream_id":"u1"}`)
	e.put("/apisix/routes/r2", `{"uri":"/host","hosts":["a.example.com"],"upstream_id":"u1","methods":["POST"]}`)

	cases := []struct {
		name     string
		method   string
		path     string
		hdr      []string
		status   int
		backend  string
		bodyWant string
	}{
		{"prefix match", "GET", "/hello/world?x=1", nil, 200, "b1", "b1:"},
		{"no route", "GET", "/nope", nil, 404, "", `{"error_msg":"404 Route Not Found"}`},
		{"host+method match", "POST", "/host", []string{"Host", "a.example.com"}, 200, "b1", "b1:payload"},
		{"method mismatch", "GET", "/host", []string{"Host", "a.example.com"}, 404, "", "404 Route Not Found"},
		{"host mismatch", "POST", "/host", []string{"Host", "b.example.com"}, 404, "", "404 Route Not Found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			body := ""
			if c.method == "POST" {
				body = "payload"
			}
			r := e.do(c.method, c.path, body, c.hdr...)
			if r.status != c.status {
				t.Fatalf("status %d, want %d (body %q)", r.status, c.status, r.body)
			}
			if got := r.h.Get("X-Backend"); got != c.backend {
				t.Fatalf("backend %q, want %q", got, c.backend)
			}
			if c.method == "GET" && c.status == 200 && r.body != c.bodyWant {
				t.Fatalf("body %q, want %q", r.body, c.bodyWant)
			}
			if !strings.Contains(r.body, c.bodyWant) {
				t.Fatalf("body %q, want it to contain %q", r.body, c.bodyWant)
			}
		})
	}
	r := e.get("/hello", "X-Forwarded-For", "10.0.0.1")
	if got := r.h.Get("X-Seen-XFF"); got != "10.0.0.1, 127.0.0.1" {
		t.Fatalf("X-Forwarded-For upstream = %q", got)
	}
	if got := r.h.Get("X-Seen-XFP"); got != "http" {
		t.Fatalf("X-Forwarded-Proto upstream = %q", got)
	}
	if got := r.h.Get("X-Seen-Path"); got != "/hello" {
		t.Fatalf("path upstream = %q", got)
	}
}

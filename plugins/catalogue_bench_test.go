package plugins_test

import (
	"encoding/base64"
	"net"
	"testing"

	"github.com/golang-jwt/jwt/v5"
	"github.com/valyala/fasthttp"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/auth"
	_ "github.com/meshagent/meshagent/plugins/consumerrestriction"
	_ "github.com/meshagent/meshagent/plugins/cors"
	_ "github.com/meshagent/meshagent/plugins/faultinjection"
	_ "github.com/meshagent/meshagent/plugins/iprestriction"
	_ "github.com/meshagent/meshagent/plugins/limit"
	_ "github.com/meshagent/meshagent/plugins/proxyrewrite"
	_ "github.com/meshagent/meshagent/plugins/redirect"
	_ "github.com/meshagent/meshagent/plugins/requestid"
	_ "github.com/meshagent/meshagent/plugins/responserewrite"
	_ "github.com/meshagent/meshagent/plugins/trafficsplit"
)

// BenchmarkCatalogue measures each in-process catalogue plugin on the real
// HTTP/1.1 forwarding path (fasthttp client -> data plane -> fasthttp
// backend over loopback keep-alive): compare ns/op and allocs/op with the
// "none" case to get one plugin's per-request cost. allocs/op counts every
// allocation in the process, client and backend included.
func BenchmarkCatalogue(b *testing.B) {
	jwtToken, _ := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"key": "bench"}).SignedString([]byte("s3cret"))
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte("bench:pw"))
	for _, bc := range []struct {
		name, plugins string
		header        [2]string
	}{
		{"none", `{}`, [2]string{}},
		{"key-auth", `{"key-auth":{}}`, [2]string{"apikey", "k-bench"}},
		{"basic-auth", `{"basic-auth":{}}`, [2]string{"Authorization", basic}},
		{"jwt-auth", `{"jwt-auth":{}}`, [2]string{"Authorization", "Bearer " + jwtToken}},
		{"consumer-restriction", `{"key-auth":{},"consumer-restriction":{"whitelist":["bench"]}}`, [2]string{"apikey", "k-bench"}},
		{"ip-restriction", `{"ip-restriction":{"whitelist":["127.0.0.0/8"]}}`, [2]string{}},
		{"cors", `{"cors":{}}`, [2]string{"Origin", "http://a.example"}},
		{"limit-req", `{"limit-req":{"rate":1000000,"burst":1000000,"key":"remote_addr","nodelay":true}}`, [2]string{}},
		{"limit-count", `{"limit-count":{"count":1000000000,"time_window":3600}}`, [2]string{}},
		{"limit-conn", `{"limit-conn":{"conn":100000,"burst":0,"default_conn_delay":0.1,"key":"remote_addr"}}`, [2]string{}},
		{"request-id", `{"request-id":{}}`, [2]string{}},
		{"proxy-rewrite", `{"proxy-rewrite":{"uri":"/x$uri","headers":{"set":{"X-A":"1"}}}}`, [2]string{}},
		{"response-rewrite", `{"response-rewrite":{"headers":{"set":{"X-B":"2"}}}}`, [2]string{}},
		{"fault-injection", `{"fault-injection":{"abort":{"http_status":200,"percentage":1}}}`, [2]string{}},
		{"redirect", `{"redirect":{"uri":"/elsewhere","ret_code":302}}`, [2]string{}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := plugintest.New(b)
			e.Consumer("bench", `{"key-auth":{"key":"k-bench"},"basic-auth":{"username":"bench","password":"pw"},"jwt-auth":{"key":"bench","secret":"s3cret"}}`)
			be := fastBackend(b)
			e.Put("/apisix/routes/r", `{"uri":"/bench","plugins":`+bc.plugins+`,"upstream":{"nodes":{"`+be+`":1}}}`)
			hc := &fasthttp.HostClient{Addr: e.Addr, MaxConns: 64}
			do := func(req *fasthttp.Request, resp *fasthttp.Response) {
				req.SetRequestURI("http://bench.local/bench")
				if bc.header[0] != "" {
					req.Header.Set(bc.header[0], bc.header[1])
				}
				if err := hc.Do(req, resp); err != nil {
					b.Error(err)
				} else if s := resp.StatusCode(); s != 200 && s != 302 {
					b.Errorf("status %d: %s", s, resp.Body())
				}
			}
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			for range 100 {
				do(req, resp)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				do(req, resp)
			}
		})
	}
}

func fastBackend(b *testing.B) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) { c.SetBodyString("ok") }}
	go s.Serve(l)
	b.Cleanup(func() { s.Shutdown() })
	return l.Addr().String()
}

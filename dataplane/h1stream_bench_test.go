package dataplane

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"testing"

	"github.com/valyala/fasthttp"
)

// BenchmarkHTTP1Download measures relaying an 8 MiB body (streamed: over
// streamMax) from a fasthttp backend to a net/http client, with a
// Content-Length and chunked.
func BenchmarkHTTP1Download(b *testing.B) {
	const size = 8 << 20
	body := make([]byte, size)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	s := &fasthttp.Server{Handler: func(c *fasthttp.RequestCtx) {
		if c.QueryArgs().Has("chunked") {
			c.SetBodyStreamWriter(func(w *bufio.Writer) { w.Write(body) })
			return
		}
		c.Response.SetBodyRaw(body)
	}}
	go s.Serve(l)
	b.Cleanup(func() { s.Shutdown() })
	e := newEnv(b, nil)
	e.put("/apisix/routes/dl", `{"uri":"/dl","upstream":{"nodes":`+nodesJSON(l.Addr().String())+`}}`)
	for _, path := range []string{"/dl", "/dl?chunked=1"} {
		b.Run(path[1:], func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				r, err := client.Get("http://" + e.http + path)
				if err != nil {
					b.Fatal(err)
				}
				n, err := io.Copy(io.Discard, r.Body)
				r.Body.Close()
				if err != nil || n != size {
					b.Fatalf("%d bytes, %v (Content-Length %s)", n, err, strconv.FormatInt(r.ContentLength, 10))
				}
			}
		})
	}
}

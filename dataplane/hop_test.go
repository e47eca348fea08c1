package dataplane

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
)

// rawBackend answers every request on a keep-alive connection with resp
// verbatim and sends the request heads it read on got.
func rawBackend(t *testing.T, resp string) (string, <-chan string) {
	t.Helper()
	l := listen(t)
	t.Cleanup(func() { l.Close() })
	got := make(chan string, 16)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var head strings.Builder
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
					}
					got <- head.String()
					if _, err := c.Write([]byte(resp)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String(), got
}

// TestHopByHopHeaders checks that hop-by-hop headers are removed in both
// directions whatever their case, and other headers pass.
func TestHopByHopHeaders(t *testing.T) {
	e := newEnv(t, nil)
	be, got := rawBackend(t, "HTTP/1.1 200 OK\r\ncontent-length: 2\r\nkeep-alive: timeout=5\r\nproxy-connection: keep-alive\r\n"+
		"Upgrade: h2c\r\nx-kept: yes\r\nTE: trailers\r\n\r\nok")
	e.put("/apisix/routes/r", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(be)+`}}`)
	cases := []struct {
		name string
		hdr  [][2]string
	}{
		{"no hop headers", nil},
		{"hop headers of any case", [][2]string{{"keep-alive", "300"}, {"TE", "trailers"}, {"proxy-authorization", "Basic eA=="}, {"X-Other", "1"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", "http://"+e.http+"/p", nil)
			for _, kv := range tc.hdr {
				req.Header[kv[0]] = []string{kv[1]}
			}
			r, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			r.Body.Close()
			head := strings.ToLower(<-got)
			for _, h := range []string{"keep-alive:", "te:", "proxy-authorization:", "connection:", "upgrade:"} {
				if strings.Contains(head, "\n"+h) {
					t.Errorf("upstream got %q in\n%s", h, head)
				}
			}
			if len(tc.hdr) > 0 && !strings.Contains(head, "\nx-other: 1") {
				t.Errorf("X-Other lost:\n%s", head)
			}
			for _, h := range []string{"Keep-Alive", "Proxy-Connection", "Upgrade", "Te"} {
				if v := r.Header.Get(h); v != "" {
					t.Errorf("client got %s: %s", h, v)
				}
			}
			if r.Header.Get("X-Kept") != "yes" || r.StatusCode != 200 {
				t.Errorf("status %d X-Kept %q", r.StatusCode, r.Header.Get("X-Kept"))
			}
		})
	}
}

package responserewrite_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/responserewrite"
)

func TestResponseRewrite(t *testing.T) {
	e := plugintest.New(t)
	e.Route("all", "/all", `{"response-rewrite":{"status_code":201,"body":"replaced","headers":{"set":{"X-Route":"$uri"},"add":["X-Added: 1"],"remove":["X-Backend"]}}}`)
	e.Route("vars", "/vars", `{"response-rewrite":{"body":"matched","vars":[["arg_x","==","1"]]}}`)
	e.Route("filters", "/filters", `{"response-rewrite":{"filters":[{"regex":"echo","scope":"global","replace":"ECHO"},{"regex":"GET","replace":"G-E-T"}]}}`)
	e.Route("legacy", "/legacy", `{"response-rewrite":{"headers":{"X-Backend":"","X-New":"v"}}}`)

	r := e.Do("GET", "/all")
	if r.Status != 201 || r.Body != "replaced" || r.Header.Get("X-Route") != "/all" || r.Header.Get("X-Added") != "1" || r.Header.Get("X-Backend") != "" {
		t.Errorf("all: %d %q %v", r.Status, r.Body, r.Header)
	}
	if r := e.Do("GET", "/vars?x=1"); r.Body != "matched" {
		t.Errorf("vars match: %q", r.Body)
	}
	if r := e.Do("GET", "/vars?x=2"); !strings.Contains(r.Body, `"path":"/vars"`) {
		t.Errorf("vars no match: %q", r.Body)
	}
	if r := e.Do("GET", "/filters"); !strings.Contains(r.Body, `"method":"G-E-T"`) {
		t.Errorf("filters: %q", r.Body)
	}
	if r := e.Do("GET", "/legacy"); r.Header.Get("X-Backend") != "" || r.Header.Get("X-New") != "v" {
		t.Errorf("legacy headers: %v", r.Header)
	}
	e.Rejected("bad", "/bad", `{"response-rewrite":{"status_code":99}}`, "status_code")
	e.Rejected("bad2", "/bad2", `{"response-rewrite":{"body":"a","filters":[{"regex":"a","replace":"b"}]}}`, "body|filters")
	e.Rejected("bad3", "/bad3", `{"response-rewrite":{"headers":{"add":["nocolon"]}}}`, "headers.add[0]")
}

// A rewrite of the status and headers only leaves the body alone: it
// streams (the client has the first chunk before the backend sends the
// second), with the new status and headers; a body rewrite of the same
// backend still gets the whole body.
func TestResponseRewriteHeadersOnlyStreams(t *testing.T) {
	e := plugintest.New(t)
	first := strings.Repeat("a", 64<<10)
	release := make(chan struct{})
	ln := plugintest.Listen(t)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "slow")
		_, _ = io.WriteString(w, first)
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "second")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	route := func(id, uri, plugins string) {
		e.Put("/apisix/routes/"+id, fmt.Sprintf(`{"uri":%q,"plugins":%s,"upstream":{"nodes":{%q:1}}}`, uri, plugins, ln.Addr().String()))
	}
	route("hdr", "/hdr", `{"response-rewrite":{"status_code":203,"headers":{"set":{"X-Rewritten":"yes"},"remove":["X-Backend"]}}}`)
	route("body", "/body", `{"response-rewrite":{"filters":[{"regex":"second","replace":"2nd"}]}}`)

	type result struct {
		r   *http.Response
		err error
	}
	got := make(chan result, 1)
	go func() {
		r, err := e.Client.Get("http://" + e.Addr + "/hdr")
		if err == nil {
			buf := make([]byte, len(first))
			_, err = io.ReadFull(r.Body, buf)
			if err == nil && string(buf) != first {
				err = fmt.Errorf("first chunk %q...", buf[:16])
			}
		}
		got <- result{r, err}
	}()
	var r *http.Response
	select {
	case res := <-got:
		if res.err != nil {
			t.Fatal(res.err)
		}
		r = res.r
	case <-time.After(5 * time.Second):
		close(release)
		t.Fatal("first chunk not streamed: the response was buffered")
	}
	defer r.Body.Close()
	if r.StatusCode != 203 || r.Header.Get("X-Rewritten") != "yes" || r.Header.Get("X-Backend") != "" {
		t.Fatalf("streamed response: %d %v", r.StatusCode, r.Header)
	}
	close(release)
	rest, err := io.ReadAll(r.Body)
	if err != nil || string(rest) != "second" {
		t.Fatalf("rest %q, %v", rest, err)
	}
	if b := e.Do("GET", "/body"); b.Body != first+"2nd" || b.Header.Get("X-Backend") != "slow" {
		t.Fatalf("body rewrite: %d bytes, ends %q", len(b.Body), b.Body[max(0, len(b.Body)-8):])
	}
}

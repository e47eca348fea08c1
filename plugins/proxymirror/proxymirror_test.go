package proxymirror_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/meshagent/meshagent/plugins/plugintest"
	"github.com/meshagent/meshagent/plugins/proxymirror"
)

func TestProxyMirror(t *testing.T) {
	e := plugintest.New(t)
	got := make(chan *http.Request, 10)
	mirror := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r
		w.WriteHeader(500) // the mirror's answer is ignored
	}))
	t.Cleanup(mirror.Close)
	e.Route("m", "/m/*", `{"proxy-mirror":{"host":"`+mirror.URL+`","path":"/copy","path_concat_mode":"prefix"}}`)
	r := e.Do("GET", "/m/x?q=1", "X-Test: yes")
	if r.Status != 200 {
		t.Fatalf("client saw %d", r.Status)
	}
	select {
	case m := <-got:
		if m.URL.Path != "/copy/m/x" || m.URL.RawQuery != "q=1" || m.Header.Get("X-Test") != "yes" {
			t.Fatalf("mirrored %s %s %v", m.URL.Path, m.URL.RawQuery, m.Header)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no mirrored request")
	}
	// Sent is counted once the mirror's response is read, after the
	// handler above has run: wait for it (bounded).
	for deadline := time.Now().Add(3 * time.Second); proxymirror.Stats.Sent.Load() < 1; {
		if time.Now().After(deadline) {
			t.Fatalf("mirror not counted as sent")
		}
		time.Sleep(5 * time.Millisecond)
	}
	e.Rejected("bad", "/bad", `{"proxy-mirror":{"host":"http://h/path"}}`, "host")
	e.Rejected("bad2", "/bad2", `{"proxy-mirror":{"host":"http://h","sample_ratio":2}}`, "sample_ratio")
}

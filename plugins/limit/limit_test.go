package limit_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/meshagent/meshagent/plugins/plugintest"

	_ "github.com/meshagent/meshagent/plugins/limit"
)

func TestLimitCount(t *testing.T) {
	e := plugintest.New(t)
	e.Route("c", "/c", `{"limit-count":{"count":3,"time_window":60,"key":"http_x_user","rejected_code":429,"rejected_msg":"slow down"}}`)
	for i := 1; i <= 3; i++ {
		r := e.Do("GET", "/c", "X-User: alice")
		if r.Status != 200 || r.Header.Get("X-RateLimit-Limit") != "3" || r.Header.Get("X-RateLimit-Remaining") != fmt.Sprint(3-i) {
			t.Fatalf("request %d: %d %v", i, r.Status, r.Header)
		}
	}
	r := e.Do("GET", "/c", "X-User: alice")
	if r.Status != 429 || r.Body != `{"error_msg":"slow down"}` || r.Header.Get("X-RateLimit-Remaining") != "0" {
		t.Fatalf("4th: %d %q %v", r.Status, r.Body, r.Header)
	}
	if r := e.Do("GET", "/c", "X-User: bob"); r.Status != 200 {
		t.Fatalf("other key limited: %d", r.Status)
	}
	// A rebuild with the same config keeps the counters (state survives
	// snapshots); an unrelated change must not reset alice's window.
	e.Route("other", "/other", `{}`)
	if r := e.Do("GET", "/c", "X-User: alice"); r.Status != 429 {
		t.Fatalf("counter reset by an unrelated config change: %d", r.Status)
	}
	e.Rejected("bad", "/bad", `{"limit-count":{"count":0,"time_window":1}}`, "count")
	e.Rejected("bad2", "/bad2", `{"limit-count":{"count":1,"time_window":1,"policy":"redis"}}`, "policy")
}

func TestLimitReq(t *testing.T) {
	e := plugintest.New(t)
	// 1 request/s, no burst: of a quick series only the first passes.
	e.Route("r", "/r", `{"limit-req":{"rate":1,"burst":0,"key":"remote_addr","rejected_code":503}}`)
	ok, limited := 0, 0
	for i := 0; i < 5; i++ {
		switch r := e.Do("GET", "/r"); r.Status {
		case 200:
			ok++
		case 503:
			limited++
		default:
			t.Fatalf("status %d", r.Status)
		}
	}
	if ok != 1 || limited != 4 {
		t.Fatalf("ok=%d limited=%d, want 1 and 4", ok, limited)
	}
	// rate 20/s with burst 5 and delay: 6 quick requests all pass, the
	// excess ones delayed to the rate (about 5 x 50ms in total).
	e.Route("d", "/d", `{"limit-req":{"rate":20,"burst":5,"key":"remote_addr"}}`)
	start := time.Now()
	for i := 0; i < 6; i++ {
		if r := e.Do("GET", "/d"); r.Status != 200 {
			t.Fatalf("burst request %d: %d", i, r.Status)
		}
	}
	if el := time.Since(start); el < 150*time.Millisecond {
		t.Fatalf("excess requests were not delayed: %v", el)
	}
	e.Rejected("bad", "/bad", `{"limit-req":{"rate":0,"burst":1,"key":"remote_addr"}}`, "rate")
}

func TestLimitConn(t *testing.T) {
	e := plugintest.New(t)
	// The backend is the echo server: make requests slow with a delay plugin
	// is not available here, so hold them with a slow upstream instead.
	slow := plugintest.Listen(t)
	release := make(chan struct{})
	go plugintest.ServeSlow(slow, release)
	t.Cleanup(func() { slow.Close() })
	e.Put("/apisix/routes/lc", fmt.Sprintf(`{"uri":"/lc","plugins":{"limit-conn":{"conn":2,"burst":0,"default_conn_delay":0.1,"key":"remote_addr","rejected_code":503}},"upstream":{"nodes":{%q:1}}}`, slow.Addr().String()))
	var wg sync.WaitGroup
	statuses := make(chan int, 3)
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); statuses <- e.Do("GET", "/lc").Status }()
	}
	time.Sleep(300 * time.Millisecond) // both in flight
	if r := e.Do("GET", "/lc"); r.Status != 503 {
		t.Fatalf("third concurrent request: %d, want 503", r.Status)
	}
	close(release)
	wg.Wait()
	close(statuses)
	for s := range statuses {
		if s != 200 {
			t.Fatalf("in-limit request: %d", s)
		}
	}
	// Slots were released by the log phase: new requests pass again.
	for i := 0; i < 3; i++ {
		if r := e.Do("GET", "/lc"); r.Status != 200 {
			t.Fatalf("after release %d: %d", i, r.Status)
		}
	}
}

// TestLimitKeyTypes: var_combination keys combine variables (falling back
// to remote_addr when none is set); constant keys share one counter.
func TestLimitKeyTypes(t *testing.T) {
	e := plugintest.New(t)
	e.Route("combo", "/combo", `{"limit-count":{"count":1,"time_window":60,"key_type":"var_combination","key":"$http_x_a-$arg_b","rejected_code":429}}`)
	e.Route("const", "/const", `{"limit-count":{"count":1,"time_window":60,"key_type":"constant","key":"all","rejected_code":429}}`)
	for _, tc := range []struct {
		path   string
		hdr    []string
		status int
	}{
		{"/combo?b=1", []string{"X-A: x"}, 200},
		{"/combo?b=1", []string{"X-A: x"}, 429}, // same combination
		{"/combo?b=2", []string{"X-A: x"}, 200}, // another one
		{"/combo", nil, 200},                    // nothing set: remote_addr
		{"/combo", nil, 429},
		{"/const", []string{"X-A: 1"}, 200},
		{"/const", []string{"X-A: 2"}, 429},
	} {
		if r := e.Do("GET", tc.path, tc.hdr...); r.Status != tc.status {
			t.Errorf("%s %v: %d, want %d", tc.path, tc.hdr, r.Status, tc.status)
		}
	}
	e.Rejected("bad", "/bad", `{"limit-count":{"count":1,"time_window":1,"key_type":"var_combination"}}`, "key")
	e.Rejected("bad2", "/bad2", `{"limit-count":{"count":1,"time_window":1,"key_type":"nope"}}`, "key_type")
	e.Rejected("bad3", "/bad3", `{"limit-req":{"rate":1,"burst":1,"key":"remote_addr","rejected_code":600}}`, "rejected_code")
}

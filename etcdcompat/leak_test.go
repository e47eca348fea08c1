package etcdcompat

import (
	"context"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestWatchReconnectNoLeak opens and drops HTTP watches the way APISIX
// 2.x (one watch per change batch, closing the connection) and 3.x (a
// re-watch after every idle timeout) do, and checks that the server lets
// go of them: goroutines return to their level before, and writes keep
// flowing to a surviving watch.
func TestWatchReconnectNoLeak(t *testing.T) {
	c := startCompat(t, Options{})
	s := newSide(t, "etcdcompat", c.url)
	p := keyPrefix(t)
	body := fmt.Sprintf(`{"create_request":{"key":"%s","range_end":"%s"}}`, b64(p), b64(string(prefixEnd(p))))
	settle := func() int {
		var n int
		for i := 0; i < 50; i++ {
			runtime.GC()
			n = runtime.NumGoroutine()
			time.Sleep(20 * time.Millisecond)
			if runtime.NumGoroutine() == n {
				break
			}
		}
		return n
	}
	// One watch first, so the connection pools exist before counting.
	open := func() (context.CancelFunc, *http.Response) {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.url+"/v3/watch", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return cancel, resp
	}
	cancel, resp := open()
	cancel()
	resp.Body.Close()
	before := settle()

	for i := 0; i < 50; i++ {
		cancel, resp := open()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("watch %d: status %d", i, resp.StatusCode)
		}
		cancel()
		resp.Body.Close()
	}
	after := settle()
	if after > before+5 {
		t.Errorf("goroutines: %d before 50 dropped watches, %d after", before, after)
	}

	// The server still delivers to a new watch.
	w := s.openWatch(t)
	w.send(t, create(p, string(prefixEnd(p)), 0, nil))
	w.recv(t, 1)
	mustRes(t, s, s.res(s.call(put(p+"k", "v"))))
	if got := w.recv(t, 1)[0]; !strings.Contains(got, `"events"`) {
		t.Fatalf("no event after reconnects: %s", got)
	}
}

package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/meshagent/meshagent/redirect/netnstest"
)

// adminAddr is the sidecar's admin address inside the app namespace
// (loopback traffic is never captured).
const adminAddr = "127.0.0.1:19901"

// serveEcho answers every connection on ln with one line naming the
// addresses the server saw, after reading one line from the client.
func serveEcho(ln net.Listener) { netnstest.Serve(ln, echoConn) }

// echoConn answers one line on c. A named function rather than a literal
// in serveEcho: the compiler then keeps its bufio.Reader on the stack,
// which BenchmarkCapturedConnect's allocation count sees.
func echoConn(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	line, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Fprintf(c, "from=%s to=%s got=%s", c.RemoteAddr(), c.LocalAddr(), line)
}

// serveHTTP answers every request with the addresses the server saw.
func serveHTTP(t *testing.T, ln net.Listener) {
	hs := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		la := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		fmt.Fprintf(w, "from=%s to=%s host=%s\n", r.RemoteAddr, la, r.Host)
	})}
	go func() { _ = hs.Serve(ln) }()
	t.Cleanup(func() { _ = hs.Close() })
}

// client returns an HTTP client whose connections are made from ns.
func (tp *topo) client(ns string, timeout time.Duration) *http.Client {
	return &http.Client{Timeout: timeout, Transport: &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
			dl, ok := ctx.Deadline()
			if !ok {
				dl = time.Now().Add(timeout)
			}
			return tp.dial(ns, addr, time.Until(dl))
		},
	}}
}

// get does one GET of url from ns and returns the status and body.
func (tp *topo) get(ns, url string, timeout time.Duration) (int, string, error) {
	r, err := tp.client(ns, timeout).Get(url)
	if err != nil {
		return 0, "", err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	return r.StatusCode, string(b), err
}

// getResult is the outcome of a GET started by getAsync.
type getResult struct {
	code int
	body string
	err  error
	at   time.Time // when the GET finished
}

// getAsync starts tp.get in the background; the channel yields its result.
func (tp *topo) getAsync(ns, url string, timeout time.Duration) <-chan getResult {
	resc := make(chan getResult, 1)
	go func() {
		code, body, err := tp.get(ns, url, timeout)
		resc <- getResult{code, body, err, time.Now()}
	}()
	return resc
}

// removeAtCleanup runs `meshagent redirect remove` in the app namespace
// at cleanup, so a failed test leaves no rules behind in the namespace
// before it is deleted.
func (tp *topo) removeAtCleanup() {
	tp.T.Cleanup(func() { _, _ = netnstest.Cmd(tp.App, meshagentBin, "redirect", "remove").CombinedOutput() })
}

// waitReady polls the sidecar's admin /ready until it answers 200.
func (tp *topo) waitReady(s *sidecar) {
	tp.T.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, _ := tp.get(tp.App, "http://"+adminAddr+"/ready", time.Second)
		if code == http.StatusOK {
			return
		}
		if s.exited() || time.Now().After(deadline) {
			tp.T.Fatalf("meshagent not ready (last /ready %d, exited %v):\n%s", code, s.exited(), s.out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// stats returns the data plane's counters from the admin /stats.
func (tp *topo) stats() map[string]int64 {
	tp.T.Helper()
	code, body, err := tp.get(tp.App, "http://"+adminAddr+"/stats", 3*time.Second)
	if err != nil || code != http.StatusOK {
		tp.T.Fatalf("/stats: %d %v %s", code, err, body)
	}
	var v struct {
		Dataplane map[string]int64 `json:"dataplane"`
	}
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		tp.T.Fatalf("/stats: %v: %s", err, body)
	}
	return v.Dataplane
}

// writeConfig writes a minimal standalone file (one route table, unused
// by the captured traffic) readable by the proxy uid.
func writeConfig(t testing.TB) string {
	t.Helper()
	dir := filepath.Dir(meshagentBin)
	f := filepath.Join(dir, fmt.Sprintf("apisix-%s.yaml", strings.ReplaceAll(t.Name(), "/", "_")))
	y := "routes:\n  - id: r1\n    uri: /local\n    upstream:\n      nodes:\n        \"127.0.0.1:1\": 1\n#END\n"
	if err := os.WriteFile(f, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.Remove(f) })
	return f
}

func sidecarArgs(t testing.TB, extra ...string) []string {
	return append([]string{"--apisix-yaml", writeConfig(t), "--http-listen", "127.0.0.1:9080",
		"--admin-listen", adminAddr, "--log-level", "info", "--capture-outbound", "0.0.0.0:15001"}, extra...)
}

// saveBoth returns the normalized iptables-save and ip6tables-save of ns.
func (tp *topo) saveBoth(ns string) [2]string {
	return [2]string{tp.save(ns, false), tp.save(ns, true)}
}

// TestCapturePassThrough: with the rules installed by `meshagent redirect
// install` and `meshagent run --capture-outbound` running as the proxy uid,
// HTTP and raw TCP (IPv4 and IPv6) from the app namespace reach the server
// through meshagent: the server sees the app's address and the destination
// the app dialed, from a connection other than the app's own (a different
// source port), and meshagent's pass-through counter counts each one.
// With --capture-passthrough refuse the same connection is reset. `meshagent
// redirect remove` then leaves iptables-save exactly as before install.
func TestCapturePassThrough(t *testing.T) {
	tp := newTopo(t)
	serveHTTP(t, tp.listen(tp.Srv, ":8080"))
	serveEcho(tp.listen(tp.Srv, ":9000"))
	before := tp.saveBoth(tp.App)
	tp.meshagent(tp.App, "redirect", "install")
	tp.removeAtCleanup()
	tp.meshagent(tp.App, "redirect", "verify") // exits non-zero on any difference

	s := tp.startSidecar(sidecarArgs(t)...)
	tp.waitReady(s)
	base := tp.stats()["passthrough"]

	cases := []struct {
		name, proto, dst string
	}{
		{"http ipv4", "http", srvIP4 + ":8080"},
		{"tcp ipv4", "tcp", srvIP4 + ":9000"},
		{"tcp ipv6", "tcp", "[" + srvIP6 + "]:9000"},
	}
	for i, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			var clientPort int
			var reply string
			switch cs.proto {
			case "http":
				code, body, err := tp.get(tp.App, "http://"+cs.dst+"/x", 5*time.Second)
				if err != nil || code != http.StatusOK {
					t.Fatalf("GET: %d %v %s", code, err, body)
				}
				reply = body
				if !strings.Contains(body, "host="+cs.dst) {
					t.Fatalf("server saw the wrong Host: %s", body)
				}
			case "tcp":
				c, err := tp.dial(tp.App, cs.dst, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				clientPort = c.LocalAddr().(*net.TCPAddr).Port
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "ping %d\n", i)
				b, err := io.ReadAll(c)
				if err != nil {
					t.Fatal(err)
				}
				reply = string(b)
				if !strings.HasSuffix(reply, fmt.Sprintf("got=ping %d\n", i)) {
					t.Fatalf("reply %q", reply)
				}
			}
			// The server saw the app's address and the dialed destination.
			f := strings.Fields(reply)
			from, to := strings.TrimPrefix(f[0], "from="), strings.TrimPrefix(f[1], "to=")
			fromHost, fromPort, _ := net.SplitHostPort(from)
			if to != cs.dst || (fromHost != appIP4 && fromHost != appIP6) {
				t.Fatalf("server saw from=%s to=%s, want the app's address and %s", from, to, cs.dst)
			}
			if clientPort != 0 && fromPort == strconv.Itoa(clientPort) {
				t.Fatalf("server saw the app's own socket (port %d): the connection was not captured", clientPort)
			}
			if got := tp.stats()["passthrough"] - base; got != int64(i+1) {
				t.Fatalf("meshagent passthrough counter +%d, want +%d", got, i+1)
			}
		})
	}

	// Refuse: the same destination is reset at once.
	s.kill()
	s = tp.startSidecar(sidecarArgs(t, "--capture-passthrough", "refuse")...)
	tp.waitReady(s)
	// The reset may arrive before connect(2) returns, or after.
	c, err := tp.dial(tp.App, srvIP4+":9000", 5*time.Second)
	if err == nil {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		// The socket reports the reset once: to the write if it
		// arrived first, else to the read.
		if _, err = fmt.Fprintf(c, "ping\n"); err == nil {
			_, err = c.Read(make([]byte, 1))
		}
		c.Close()
	}
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("refused pass-through: read %v, want connection reset", err)
	}
	if st := tp.stats(); st["passthrough_refused"] != 1 || st["passthrough"] != 0 {
		t.Fatalf("counters after refuse: %v", st)
	}
	s.kill()

	tp.meshagent(tp.App, "redirect", "remove")
	if after := tp.saveBoth(tp.App); after != before {
		t.Fatalf("iptables-save after remove differs from before install:\nbefore:\n%s\n%s\nafter:\n%s\n%s", before[0], before[1], after[0], after[1])
	}
}

package dataplane

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

// rawGet sends one keep-alive request on c and returns the backend name.
func rawGet(t *testing.T, c net.Conn, br *bufio.Reader, path string) string {
	t.Helper()
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", path)
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	r, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read response: %v", err)
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	if r.StatusCode != 200 {
		return fmt.Sprint(r.StatusCode)
	}
	return r.Header.Get("X-Backend")
}

func listenerJSON(addr string, chains ...string) string {
	return `{"address":"` + addr + `","filter_chains":[` + strings.Join(chains, ",") + `]}`
}

func TestStoreListenerLifecycle(t *testing.T) {
	e := newEnv(t, nil)
	a, b := backend(t, "a"), backend(t, "b")
	e.put("/apisix/routes/ra", `{"uri":"/*","labels":{"meshagent.route_config":"rc-a"},"upstream":{"nodes":`+nodesJSON(a)+`}}`)
	e.put("/apisix/routes/rb", `{"uri":"/*","labels":{"meshagent.route_config":"rc-b"},"upstream":{"nodes":`+nodesJSON(b)+`}}`)
	echo := tcpEcho(t, "hello-from-server\n")
	e.put("/apisix/stream_routes/st", `{"upstream":{"nodes":`+nodesJSON(echo)+`}}`)

	httpA := `{"name":"a","kind":"http","route_config":"rc-a","match":{"transport_protocol":"raw_buffer"}}`
	tcpTLS := `{"name":"t","kind":"tcp","stream_route_id":"st","match":{"transport_protocol":"tls"}}`
	e.put("/meshagent/listeners/l1", listenerJSON("127.0.0.1:0", httpA, tcpTLS))
	addr, ok := e.dp.ListenerAddr("l1")
	if !ok {
		t.Fatal("listener l1 not bound")
	}
	// A keep-alive connection on chain "a".
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	if got := rawGet(t, c, br, "/1"); got != "a" {
		t.Fatalf("before update: %q", got)
	}
	// Update the listener (the tcp chain changes, and a new chain is
	// added): the chain table is swapped, the socket and the established
	// connection stay.
	tcpTLS2 := `{"name":"t","kind":"tcp","stream_route_id":"st","match":{"transport_protocol":"tls","server_names":["x.test"]}}`
	e.put("/meshagent/listeners/l1", listenerJSON("127.0.0.1:0", httpA, tcpTLS2))
	if got := rawGet(t, c, br, "/2"); got != "a" {
		t.Fatalf("established connection after update: %q", got)
	}
	if addr2, _ := e.dp.ListenerAddr("l1"); addr2.String() != addr.String() {
		t.Fatalf("update rebound the socket: %s -> %s", addr, addr2)
	}
	// A new connection sees the new table: change chain "a" to rc-b.
	e.put("/meshagent/listeners/l1", listenerJSON("127.0.0.1:0", `{"name":"a","kind":"http","route_config":"rc-b"}`))
	c2, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	br2 := bufio.NewReader(c2)
	if got := rawGet(t, c2, br2, "/3"); got != "b" {
		t.Fatalf("new connection after chain change: %q", got)
	}
	// The old connection keeps the chain it was given, and is drained:
	// its next response closes it (drain.go).
	if got, closed := rawGetClose(t, c, br, "/4"); got != "a" || !closed {
		t.Fatalf("old connection after chain change: %q, closed %v", got, closed)
	}
	// Remove: the socket closes; new connections are refused.
	e.del("/meshagent/listeners/l1")
	if _, ok := e.dp.ListenerAddr("l1"); ok {
		t.Fatal("listener still registered")
	}
	if c3, err := net.DialTimeout("tcp", addr.String(), time.Second); err == nil {
		c3.Close()
		t.Fatal("removed listener still accepts")
	}
	if got, closed := rawGetClose(t, c2, br2, "/5"); got != "b" || !closed {
		t.Fatalf("connection after listener removal: %q, closed %v", got, closed)
	}
}

func TestServerFirstOpaqueAfterSniffTimeout(t *testing.T) {
	e := newEnv(t, nil)
	echo := tcpEcho(t, "220 greeting\r\n")
	e.put("/apisix/stream_routes/smtp", `{"upstream":{"nodes":`+nodesJSON(echo)+`}}`)
	e.put("/meshagent/listeners/l", listenerJSON("127.0.0.1:0", `{"kind":"tcp","stream_route_id":"smtp"}`))
	addr, _ := e.dp.ListenerAddr("l")
	c, err := net.Dial("tcp", addr.String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || line != "220 greeting\r\n" {
		t.Fatalf("server-first protocol: %q, %v", line, err)
	}
}

func TestOriginalDst(t *testing.T) {
	var mu sync.Mutex
	orig := map[string]netip.AddrPort{} // client addr -> original dst
	e := newEnv(t, func(o *Options) {
		o.OriginalDst = func(c net.Conn) (netip.AddrPort, error) {
			// The test records the destination right after dialing.
			for range 1000 {
				mu.Lock()
				ap, ok := orig[c.RemoteAddr().String()]
				mu.Unlock()
				if ok {
					return ap, nil
				}
				time.Sleep(time.Millisecond)
			}
			return netip.AddrPort{}, fmt.Errorf("no original destination for %s", c.RemoteAddr())
		}
	})
	a := backend(t, "a")
	direct := backend(t, "direct")
	e.put("/apisix/routes/ra", `{"uri":"/*","labels":{"meshagent.route_config":"in"},"upstream":{"nodes":`+nodesJSON(a)+`}}`)
	e.put("/meshagent/listeners/virtual", `{"address":"127.0.0.1:0","use_original_dst":true,"filter_chains":[{"kind":"tcp","stream_route_id":"none"}]}`)
	e.put("/meshagent/listeners/inbound", listenerJSON("127.0.0.1:0", `{"kind":"http","route_config":"in"}`))
	va, _ := e.dp.ListenerAddr("virtual")
	ia, _ := e.dp.ListenerAddr("inbound")
	cases := []struct {
		name string
		dst  string
		want string
	}{
		{"handed to the listener of the original port", ia.String(), "a"},
		{"no listener: passthrough to the original destination", direct, "direct"},
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			c, err := net.Dial("tcp", va.String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mu.Lock()
			orig[c.LocalAddr().String()] = netip.MustParseAddrPort(cs.dst)
			mu.Unlock()
			if got := rawGet(t, c, bufio.NewReader(c), "/o"); got != cs.want {
				t.Fatalf("got %q, want %q", got, cs.want)
			}
		})
	}
}

// TestVirtualListenersAndOriginalDstFilter: a listener with
// meshagent.bind_to_port=false binds nothing and is reached only by a
// use_original_dst hand-off (Istio's per-service outbound listeners); one
// with meshagent.original_dst_filter=true picks its filter chain by the
// connection's original destination port (Istio's virtualInbound).
func TestVirtualListenersAndOriginalDstFilter(t *testing.T) {
	var mu sync.Mutex
	orig := map[string]netip.AddrPort{}
	e := newEnv(t, func(o *Options) {
		o.OriginalDst = func(c net.Conn) (netip.AddrPort, error) {
			for range 1000 {
				mu.Lock()
				ap, ok := orig[c.RemoteAddr().String()]
				mu.Unlock()
				if ok {
					return ap, nil
				}
				time.Sleep(time.Millisecond)
			}
			return netip.AddrPort{}, fmt.Errorf("no original destination for %s", c.RemoteAddr())
		}
	})
	freePort := func() int {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		return ln.Addr().(*net.TCPAddr).Port
	}
	svcPort, p1, p2 := freePort(), freePort(), freePort()
	for _, r := range []struct{ id, table, name string }{{"svc", "svc", "a"}, {"in1", "in1", "b"}, {"in2", "in2", "c"}} {
		e.put("/apisix/routes/"+r.id, `{"uri":"/*","labels":{"meshagent.route_config":"`+r.table+`"},"upstream":{"nodes":`+nodesJSON(backend(t, r.name))+`}}`)
	}
	e.put("/meshagent/listeners/virtual", `{"address":"127.0.0.1:0","use_original_dst":true,"filter_chains":[{"kind":"tcp","stream_route_id":"none"}]}`)
	e.put("/meshagent/listeners/svc", fmt.Sprintf(`{"address":"0.0.0.0:%d","labels":{"meshagent.bind_to_port":"false"},"filter_chains":[{"kind":"http","route_config":"svc"}]}`, svcPort))
	e.put("/meshagent/listeners/vin", fmt.Sprintf(`{"address":"127.0.0.1:0","labels":{"meshagent.original_dst_filter":"true"},"filter_chains":[
		{"match":{"destination_port":%d},"kind":"http","route_config":"in1"},
		{"match":{"destination_port":%d},"kind":"http","route_config":"in2"}]}`, p1, p2))
	if _, bound := e.dp.ListenerAddr("svc"); bound {
		t.Fatal("a bind_to_port=false listener was bound")
	}
	if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", svcPort)); err == nil {
		c.Close()
		t.Fatal("something listens on the virtual listener's port")
	}
	va, _ := e.dp.ListenerAddr("virtual")
	vin, _ := e.dp.ListenerAddr("vin")
	for _, cs := range []struct {
		name, via string
		dst       int
		want      string
	}{
		{"hand-off to an unbound listener", va.String(), svcPort, "a"},
		{"chain by original port (first)", vin.String(), p1, "b"},
		{"chain by original port (second)", vin.String(), p2, "c"},
	} {
		t.Run(cs.name, func(t *testing.T) {
			c, err := net.Dial("tcp", cs.via)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			mu.Lock()
			orig[c.LocalAddr().String()] = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(cs.dst))
			mu.Unlock()
			if got := rawGet(t, c, bufio.NewReader(c), "/o"); got != cs.want {
				t.Fatalf("got %q, want %q", got, cs.want)
			}
		})
	}
}

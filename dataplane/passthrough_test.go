package dataplane

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestPassThroughPolicy drives a use_original_dst listener whose original
// destination has no listener: forwarded through PassThroughDial and
// counted, or reset when RefusePassThrough is set; and a connection made
// to the listener's own port (not redirected) is served by its own chains
// instead of being passed through to itself.
func TestPassThroughPolicy(t *testing.T) {
	direct := backend(t, "direct")
	cases := []struct {
		name      string
		refuse    bool
		own       bool // the original destination is the listener itself
		wantBody  string
		wantReset bool
		wantPT    int64
		wantRef   int64
		wantDials int64
	}{
		{name: "forward through the dial hook", wantBody: "direct", wantPT: 1, wantDials: 1},
		{name: "refuse resets", refuse: true, wantReset: true, wantRef: 1},
		{name: "own port: own chains, no loop", own: true},
	}
	for _, cs := range cases {
		t.Run(cs.name, func(t *testing.T) {
			var dials atomic.Int64
			e := newEnv(t, func(o *Options) {
				o.RefusePassThrough = cs.refuse
				o.PassThroughDial = func(ctx context.Context, network, addr string) (net.Conn, error) {
					dials.Add(1)
					return (&net.Dialer{}).DialContext(ctx, network, addr)
				}
				o.OriginalDst = func(c net.Conn) (netip.AddrPort, error) {
					if cs.own {
						return c.LocalAddr().(*net.TCPAddr).AddrPort(), nil
					}
					return netip.MustParseAddrPort(direct), nil
				}
			})
			e.put("/meshagent/listeners/virtual", `{"address":"127.0.0.1:0","use_original_dst":true,"filter_chains":[{"kind":"tcp","stream_route_id":"none"}]}`)
			va, ok := e.dp.ListenerAddr("virtual")
			if !ok {
				t.Fatal("virtual listener not bound")
			}
			c, err := net.Dial("tcp", va.String())
			// The reset can land before connect(2) reports success: the
			// refusal happened all the same.
			if err != nil && !(cs.refuse && errors.Is(err, syscall.ECONNRESET)) {
				t.Fatal(err)
			}
			if err == nil {
				defer c.Close()
				switch {
				case cs.wantBody != "":
					if got := rawGet(t, c, bufio.NewReader(c), "/p"); got != cs.wantBody {
						t.Fatalf("got %q, want %q", got, cs.wantBody)
					}
				default:
					_ = c.SetDeadline(time.Now().Add(3 * time.Second))
					// A reset is reported once: to the write if it came
					// first, else to the read.
					_, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
					if err == nil {
						_, err = c.Read(make([]byte, 1))
					}
					if err == nil {
						t.Fatal("read succeeded; want the connection ended")
					}
					if reset := errors.Is(err, syscall.ECONNRESET); reset != cs.wantReset {
						t.Fatalf("read error %v: reset=%v, want %v", err, reset, cs.wantReset)
					}
				}
			}
			st := e.dp.Stats()
			if st.PassThrough.Load() != cs.wantPT || st.PassThroughRefused.Load() != cs.wantRef || dials.Load() != cs.wantDials {
				t.Fatalf("passthrough=%d refused=%d dials=%d, want %d %d %d", st.PassThrough.Load(),
					st.PassThroughRefused.Load(), dials.Load(), cs.wantPT, cs.wantRef, cs.wantDials)
			}
		})
	}
}

package e2e

import (
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// TestCaptureInbound: a remote host's connection to the app is redirected
// to `meshagent run --capture-inbound`, which passes it through to the
// app's own address with --capture-mark, so the rules let that dial reach
// the app instead of redirecting it to the inbound port again (the proxy
// uid alone is not enough: its connections to a local non-loopback
// address count as inbound). The app sees the connection coming from the
// proxy (meshagent's pass-through does not spoof the client's address)
// on the port it listens on. Both REDIRECT and TPROXY inbound modes.
func TestCaptureInbound(t *testing.T) {
	for _, mode := range []struct {
		name    string
		install []string
		run     []string
	}{
		{"redirect", nil, nil},
		{"tproxy", []string{"--inbound-mode", "tproxy"}, []string{"--capture-tproxy"}},
	} {
		t.Run(mode.name, func(t *testing.T) {
			tp := newTopo(t)
			serveEcho(tp.listen(tp.App, ":8080"))
			tp.meshagent(tp.App, append([]string{"redirect", "install"}, mode.install...)...)
			tp.removeAtCleanup()
			args := append([]string{"--capture-inbound", "0.0.0.0:15006", "--capture-mark", "0x539"}, mode.run...)
			s := tp.startSidecar(sidecarArgs(t, args...)...)
			tp.waitReady(s)
			for i, dst := range []string{appIP4 + ":8080", "[" + appIP6 + "]:8080"} {
				c, err := tp.dial(tp.Srv, dst, 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				fmt.Fprintf(c, "in %d\n", i)
				b, err := io.ReadAll(c)
				c.Close()
				if err != nil {
					t.Fatal(err)
				}
				f := strings.Fields(string(b))
				if len(f) < 3 || f[1] != "to="+dst || !strings.HasSuffix(string(b), fmt.Sprintf("got=in %d\n", i)) {
					t.Fatalf("app replied %q, want to=%s", b, dst)
				}
				// Passed through: the app's peer is meshagent in the app
				// namespace, not the remote client.
				host, _, _ := net.SplitHostPort(strings.TrimPrefix(f[0], "from="))
				if host != appIP4 && host != appIP6 {
					t.Fatalf("app saw the connection from %s, want meshagent's (the app's own address)", host)
				}
				if got := tp.stats()["passthrough"]; got != int64(i+1) {
					t.Fatalf("meshagent passthrough counter %d, want %d", got, i+1)
				}
			}
		})
	}
}

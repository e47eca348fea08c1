package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshagent/meshagent/redirect"

	"github.com/meshagent/meshagent/redirect/netnstest"
)

// BenchmarkCapturedConnect measures one short TCP exchange (connect, one
// line each way, close) from the app namespace to the server namespace:
// "direct" with the bypass mark (the rules RETURN it), "captured" through
// the rules and `meshagent run --capture-outbound` (pass-through).
func BenchmarkCapturedConnect(b *testing.B) {
	tp := newTopo(b)
	serveEcho(tp.listen(tp.Srv, ":9000"))
	tp.meshagent(tp.App, "redirect", "install")
	tp.removeAtCleanup()
	s := tp.startSidecar(sidecarArgs(b, "--log-level", "warn")...)
	tp.waitReady(s)
	marked := &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, redirect.DefaultBypassMark)
		})
		if err != nil {
			return err
		}
		return serr
	}}
	for _, bc := range []struct {
		name string
		d    *net.Dialer
	}{{"direct", marked}, {"captured", &net.Dialer{}}} {
		b.Run(bc.name, func(b *testing.B) {
			// One goroutine locked in the app namespace dials for the
			// whole run, so no namespace switch is measured. b.Fatal must
			// not be called there: the error is reported here.
			var err error
			b.ResetTimer()
			nerr := netnstest.Do(tp.App, 0, func() {
				buf := make([]byte, 256)
				for i := 0; i < b.N && err == nil; i++ {
					var c net.Conn
					if c, err = bc.d.Dial("tcp", srvIP4+":9000"); err != nil {
						return
					}
					_ = c.SetDeadline(time.Now().Add(5 * time.Second))
					fmt.Fprintf(c, "x\n")
					_, err = io.ReadAtLeast(c, buf, 10)
					c.Close()
				}
			})
			b.StopTimer()
			if err := errors.Join(nerr, err); err != nil {
				b.Fatal(err)
			}
		})
	}
	if n := tp.stats()["passthrough"]; n == 0 {
		b.Fatal("meshagent passed nothing through")
	}
}

package dataplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/dataplane/health"
)

// proxyTCP connects c to a node of up (retrying other nodes on connect
// errors), replays sniffed bytes and copies both ways. Between two
// *net.TCPConn io.Copy splices on Linux.
func (d *Dataplane) proxyTCP(c net.Conn, up *upstream) {
	d.stats.TCPConns.Add(1)
	if up == nil || up.od != nil { // original_dst needs the destination: proxyTCPOrigDst
		c.Close()
		return
	}
	if d.h1.adoptTCP(c, up) { // relayed on an event loop (tcploop_linux.go)
		return
	}
	var att balancer.Attempt
	att.Reset("", up.hf)
	var uc net.Conn
	var err error
	picked := -1
	for attempt := 0; attempt <= up.retries; attempt++ {
		ni, ok := up.picker.Pick(&att)
		if !ok {
			break
		}
		t0 := up.startTry()
		uc, err = net.DialTimeout("tcp", up.nodes[ni].addr, up.to.connect)
		if err == nil {
			picked = ni
			if up.checker != nil {
				up.checker.Report(ni, 0, health.OutcomeSuccess)
			}
			break
		}
		up.done(ni, t0, 0, err)
		d.stats.UpstreamErrors.Add(1)
	}
	if picked >= 0 {
		// The connection's lifetime is not a latency sample: release the
		// in-flight count when it ends, with no RTT.
		defer up.picker.Done(picked, 0)
	}
	if uc == nil {
		d.log.Warn("dataplane: tcp upstream unreachable", "upstream", up.id, "err", err)
		c.Close()
		return
	}
	if up.tls { // TLS origination (mTLS, tls.go)
		if uc, err = d.dialUpstreamTLS(uc, up); err != nil {
			c.Close()
			return
		}
	}
	d.splice(c, uc)
}

// passthrough connects c to its original destination, or resets it when
// Options.RefusePassThrough is set.
func (d *Dataplane) passthrough(c net.Conn, dst netip.AddrPort) {
	if d.opts.RefusePassThrough {
		d.stats.PassThroughRefused.Add(1)
		resetConn(c)
		return
	}
	d.stats.PassThrough.Add(1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	var uc net.Conn
	var err error
	if dial := d.opts.PassThroughDial; dial != nil {
		uc, err = dial(ctx, "tcp", dst.String())
	} else {
		uc, err = (&net.Dialer{}).DialContext(ctx, "tcp", dst.String())
	}
	cancel()
	if err != nil {
		d.log.Warn("dataplane: passthrough failed", "dst", dst.String(), "err", err)
		c.Close()
		return
	}
	d.splice(c, uc)
}

// resetConn closes c with an RST (SO_LINGER 0) so the client fails at
// once instead of seeing an orderly end of stream.
func resetConn(c net.Conn) {
	if pc, ok := c.(*peekConn); ok {
		c = pc.Conn
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// listenTCP binds addr, with IP_TRANSPARENT when transparent (TPROXY).
func listenTCP(addr string, transparent bool) (net.Listener, error) {
	lc := net.ListenConfig{}
	if transparent {
		lc.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_TRANSPARENT, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	return lc.Listen(context.Background(), "tcp", addr)
}

func fieldErr(list string, i int, field string, err error) error {
	idx := strconv.Itoa(i)
	if i < 0 {
		return fmt.Errorf("field \"default_filter_chain.%s\": %w", field, err)
	}
	return fmt.Errorf("field \"%s[%s].%s\": %w", list, idx, field, err)
}

var errNoCert = errors.New("dataplane: no certificate for server name")

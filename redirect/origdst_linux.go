package redirect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// OriginalDstFunc recovers the address a captured connection was sent to.
// The data plane takes one as an injected hook (Options.OriginalDst), so
// tests and non-Linux builds can supply their own.
type OriginalDstFunc func(net.Conn) (netip.AddrPort, error)

var _ OriginalDstFunc = OriginalDst

// soOriginalDst is SO_ORIGINAL_DST (linux/netfilter_ipv4.h) and equally
// IP6T_SO_ORIGINAL_DST (linux/netfilter_ipv6/ip6_tables.h); both are 80.
const soOriginalDst = 80

// OriginalDst returns the destination c was addressed to before the nat
// table's REDIRECT rewrote it: SO_ORIGINAL_DST for IPv4 (including
// IPv4-mapped connections on a dual-stack socket), IP6T_SO_ORIGINAL_DST for
// IPv6. For a connection conntrack did not NAT, such as one delivered by
// TPROXY, the local address is the original destination and is returned.
// c must be a *net.TCPConn (or wrap one via a NetConn() method); the
// returned address is never IPv4-mapped.
func OriginalDst(c net.Conn) (netip.AddrPort, error) {
	tc, ok := unwrapTCP(c)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%w: %T is not a TCP connection", ErrNoOriginalDst, c)
	}
	local := tc.LocalAddr().(*net.TCPAddr).AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	rc, err := tc.SyscallConn()
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %w", ErrNoOriginalDst, err)
	}
	var dst netip.AddrPort
	var serr error
	cerr := rc.Control(func(fd uintptr) {
		if local.Addr().Is4() {
			dst, serr = origDst4(int(fd))
		} else {
			dst, serr = origDst6(int(fd))
		}
	})
	if cerr != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %w", ErrNoOriginalDst, cerr)
	}
	if errors.Is(serr, unix.ENOENT) {
		// conntrack knows the connection but did not NAT it: it was
		// addressed to the local address itself (TPROXY or no capture).
		return local, nil
	}
	if serr != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: getsockopt SO_ORIGINAL_DST: %w", ErrNoOriginalDst, serr)
	}
	return dst, nil
}

func unwrapTCP(c net.Conn) (*net.TCPConn, bool) {
	for i := 0; i < 8 && c != nil; i++ {
		if tc, ok := c.(*net.TCPConn); ok {
			return tc, true
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil, false
		}
		c = u.NetConn()
	}
	return nil, false
}

func origDst4(fd int) (netip.AddrPort, error) {
	// The kernel writes a struct sockaddr_in; IPv6Mreq has its 16 bytes.
	m, err := unix.GetsockoptIPv6Mreq(fd, unix.SOL_IP, soOriginalDst)
	if err != nil {
		return netip.AddrPort{}, err
	}
	raw := m.Multiaddr
	port := binary.BigEndian.Uint16(raw[2:4])
	addr := netip.AddrFrom4([4]byte(raw[4:8]))
	return netip.AddrPortFrom(addr, port), nil
}

func origDst6(fd int) (netip.AddrPort, error) {
	var sa unix.RawSockaddrInet6
	size := uint32(unsafe.Sizeof(sa))
	_, _, errno := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_IPV6, soOriginalDst,
		uintptr(unsafe.Pointer(&sa)), uintptr(unsafe.Pointer(&size)), 0)
	if errno != 0 {
		return netip.AddrPort{}, errno
	}
	port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
	addr := netip.AddrFrom16(sa.Addr).Unmap()
	return netip.AddrPortFrom(addr, port), nil
}

// ListenTransparent listens like net.Listen but with IP_TRANSPARENT (and
// IPV6_TRANSPARENT on IPv6 sockets) set, as a TPROXY target requires: the
// listener then accepts connections addressed to any address, and each
// accepted connection's LocalAddr is the client's original destination.
// It needs CAP_NET_ADMIN. network is "tcp", "tcp4" or "tcp6".
func ListenTransparent(ctx context.Context, network, addr string) (net.Listener, error) {
	lc := net.ListenConfig{Control: func(netw, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if netw == "tcp6" {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_IPV6, unix.IPV6_TRANSPARENT, 1)
				if serr != nil {
					return
				}
			}
			serr = unix.SetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT, 1)
		})
		if err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("redirect: set IP_TRANSPARENT (needs CAP_NET_ADMIN): %w", serr)
		}
		return nil
	}}
	return lc.Listen(ctx, network, addr)
}

// MarkedDialer returns a net.Dialer whose sockets carry SO_MARK mark, so
// the capture rules (which RETURN on Config.BypassMark) never capture them
// again. Setting SO_MARK needs CAP_NET_ADMIN.
func MarkedDialer(mark uint32) *net.Dialer {
	return &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
		}); err != nil {
			return err
		}
		if serr != nil {
			return fmt.Errorf("redirect: set SO_MARK %#x (needs CAP_NET_ADMIN): %w", mark, serr)
		}
		return nil
	}}
}

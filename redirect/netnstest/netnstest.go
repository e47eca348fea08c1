// Package netnstest builds throwaway network topologies for tests: two
// network namespaces (an "app" namespace standing for the pod and a "srv"
// namespace standing for a remote host) joined by a veth pair, addressed
// only inside them, and runs functions, commands, listeners and dialers
// inside either namespace.
//
// It owns test fixtures only; nothing in production code imports it. It
// does not know about capture rules or meshagent: package redirect's tests
// and redirect/e2e build on it. Nothing is created in the caller's
// namespace: deleting the namespaces in t.Cleanup deletes the veth pair and
// every rule inside them. Creating namespaces needs root (CAP_SYS_ADMIN)
// and iproute2; NeedRoot and NeedBinaries skip a test that lacks them.
package netnstest

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Config describes a topology: names and the addresses of the veth ends.
type Config struct {
	// Name prefixes the namespace names: <Name>-app-<id> and <Name>-srv-<id>.
	// Test packages that may run at once use different names.
	Name string
	// Veth prefixes the veth ends' names: <Veth>a<id> in the app namespace,
	// <Veth>s<id> in the srv namespace. With the id it must stay under 16
	// bytes (IFNAMSIZ), so one or two letters.
	Veth string
	// App and Srv are the addresses (with prefix length, "10.250.0.2/24",
	// "fd00:250::2/64") of the app's and the server's veth end, in the
	// order they are added. Each side needs at least one IPv4 address: the
	// first one gives that end its MAC address (02:00 and the four bytes).
	App, Srv []string
}

// Topo is a created topology. Its namespaces live until the test that
// created it ends.
type Topo struct {
	// T is the test that created the topology; helpers fail it.
	T testing.TB
	// App and Srv are the namespace names (under /run/netns).
	App, Srv string
}

var seq atomic.Int32

// NeedRoot skips t unless it runs as root; why names what root is needed
// for.
func NeedRoot(t testing.TB, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("skipping: needs root (%s); CI runs tests as root", why)
	}
}

// NeedBinaries skips t unless every named binary is on PATH; the message
// names the Debian package to install.
func NeedBinaries(t testing.TB, bins ...string) {
	t.Helper()
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			pkg := "iptables"
			if b == "ip" {
				pkg = "iproute2"
			}
			t.Skipf("skipping: %s not found (apt-get install %s)", b, pkg)
		}
	}
}

// LegacyIptables reports whether iptables uses the legacy (x_tables)
// backend, which cannot delete a table once created.
func LegacyIptables() bool {
	out, err := exec.Command("iptables", "--version").CombinedOutput()
	return err == nil && strings.Contains(string(out), "legacy")
}

// Run runs argv and returns its combined output; a failure fails t.
func Run(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// Cmd returns the command `ip netns exec ns argv...`.
func Cmd(ns string, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// newID returns an id unique among this machine's concurrent test
// processes' namespaces and interfaces.
func newID() string { return fmt.Sprintf("%d-%d", os.Getpid()%100000, seq.Add(1)) }

// addNS creates namespace ns, deleted at cleanup, or skips t when
// namespaces cannot be created (root without CAP_SYS_ADMIN, as in an
// unprivileged container).
func addNS(t testing.TB, ns string) {
	t.Helper()
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Skipf("skipping: cannot create network namespaces here: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
			t.Logf("cleanup: ip netns del %s: %v %s", ns, err, out)
		}
	})
}

// NewNamespace creates one network namespace named <name>-<id> with only
// loopback, up, and returns its name; it is deleted at cleanup. It skips t
// when namespaces cannot be created; call NeedRoot and NeedBinaries first.
func NewNamespace(t testing.TB, name string) string {
	t.Helper()
	ns := name + "-" + newID()
	addNS(t, ns)
	Run(t, "ip", "-n", ns, "link", "set", "lo", "up")
	return ns
}

// macOf returns the MAC address 02:00:a:b:c:d for the first IPv4 address
// in addrs.
func macOf(addrs []string) (string, error) {
	for _, a := range addrs {
		p, err := netip.ParsePrefix(a)
		if err != nil {
			return "", fmt.Errorf("netnstest: address %q: %w", a, err)
		}
		if ip := p.Addr(); ip.Is4() {
			b := ip.As4()
			return fmt.Sprintf("02:00:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3]), nil
		}
	}
	return "", fmt.Errorf("netnstest: no IPv4 address in %v", addrs)
}

// New creates both namespaces and the veth pair with cfg's addresses,
// links up (loopback too) and static neighbour entries for every address
// of the other end (the first neighbour solicitation on a fresh veth is
// lost and retried after 1 s, which would slow every test). It skips t
// when namespaces cannot be created; call NeedRoot and NeedBinaries first.
func New(t testing.TB, cfg Config) *Topo {
	t.Helper()
	appMAC, err := macOf(cfg.App)
	if err != nil {
		t.Fatal(err)
	}
	srvMAC, err := macOf(cfg.Srv)
	if err != nil {
		t.Fatal(err)
	}
	id := newID()
	tp := &Topo{T: t, App: cfg.Name + "-app-" + id, Srv: cfg.Name + "-srv-" + id}
	addNS(t, tp.App)
	addNS(t, tp.Srv)
	va, vs := cfg.Veth+"a"+id, cfg.Veth+"s"+id
	Run(t, "ip", "-n", tp.App, "link", "add", va, "address", appMAC, "type", "veth", "peer", "name", vs, "address", srvMAC, "netns", tp.Srv)
	var cmds [][]string
	end := func(ns, dev string, addrs []string) {
		for _, a := range addrs {
			c := []string{"-n", ns, "addr", "add", a, "dev", dev}
			if strings.Contains(a, ":") {
				c = append(c, "nodad") // usable at once, no duplicate address detection
			}
			cmds = append(cmds, c)
		}
		cmds = append(cmds, []string{"-n", ns, "link", "set", dev, "up"}, []string{"-n", ns, "link", "set", "lo", "up"})
	}
	end(tp.App, va, cfg.App)
	end(tp.Srv, vs, cfg.Srv)
	neigh := func(ns, dev string, peer []string, mac string) {
		for _, a := range peer {
			ip, _, _ := strings.Cut(a, "/")
			cmds = append(cmds, []string{"-n", ns, "neigh", "replace", ip, "lladdr", mac, "dev", dev, "nud", "permanent"})
		}
	}
	neigh(tp.App, va, cfg.Srv, srvMAC)
	neigh(tp.Srv, vs, cfg.App, appMAC)
	for _, c := range cmds {
		Run(t, append([]string{"ip"}, c...)...)
	}
	return tp
}

// Do runs fn on a fresh OS thread that has joined namespace ns. Sockets fn
// creates belong to ns for their whole life, whichever thread later uses
// them, and a process fn starts is born in ns. The thread is never
// returned to the scheduler (it exits with the goroutine), so no other
// goroutine ever runs in ns by accident. fsuid, when non-zero, is set on
// that thread before fn runs, so sockets fn creates are owned by that uid
// as far as `-m owner` is concerned. Do may be called from any goroutine;
// the error is about joining ns, fn's own outcome is fn's to report.
func Do(ns string, fsuid int, fn func()) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with this goroutine
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		if fsuid != 0 {
			_, _ = unix.SetfsuidRetUid(fsuid)
			if prev, _ := unix.SetfsuidRetUid(-1); prev != fsuid {
				errc <- fmt.Errorf("setfsuid %d: still %d", fsuid, prev)
				return
			}
		}
		fn()
		errc <- nil
	}()
	return <-errc
}

// In is Do for the test's own goroutine: failing to join ns fails tp.T.
func (tp *Topo) In(ns string, fsuid int, fn func()) {
	tp.T.Helper()
	if err := Do(ns, fsuid, fn); err != nil {
		tp.T.Fatal(err)
	}
}

// Listen listens on network and addr in namespace ns; the listener is
// closed at cleanup. A failure fails tp.T.
func (tp *Topo) Listen(ns, network, addr string) net.Listener {
	tp.T.Helper()
	var ln net.Listener
	var err error
	tp.In(ns, 0, func() { ln, err = net.Listen(network, addr) })
	if err != nil {
		tp.T.Fatalf("listen %s %s in %s: %v", network, addr, ns, err)
	}
	tp.T.Cleanup(func() { ln.Close() })
	return ln
}

// Dial connects over TCP to addr from namespace ns, as fsuid when it is
// non-zero, with d (a zero Dialer when nil), giving up after timeout. It
// may be called from any goroutine.
func (tp *Topo) Dial(ns string, fsuid int, d *net.Dialer, addr string, timeout time.Duration) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var c net.Conn
	var err error
	if nerr := Do(ns, fsuid, func() { c, err = d.DialContext(ctx, "tcp", addr) }); nerr != nil {
		return nil, nerr
	}
	return c, err
}

// Dialer returns a dial function whose sockets are created in namespace ns
// with d, by one goroutine locked to a thread in ns (created once, stopped
// at cleanup), so a proxy using it pays no per-dial namespace switch.
func (tp *Topo) Dialer(ns string, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	type req struct {
		ctx           context.Context
		network, addr string
		reply         chan result
	}
	reqs := make(chan req)
	stop := make(chan struct{})
	tp.T.Cleanup(func() { close(stop) })
	go func() {
		_ = Do(ns, 0, func() {
			for {
				select {
				case <-stop:
					return
				case r := <-reqs:
					c, err := d.DialContext(r.ctx, r.network, r.addr)
					r.reply <- result{c, err}
				}
			}
		})
	}()
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		r := req{ctx, network, addr, make(chan result, 1)}
		select {
		case reqs <- r:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		res := <-r.reply
		return res.c, res.err
	}
}

// FD opens namespace ns for APIs taking a namespace file descriptor; the
// file is closed at cleanup.
func (tp *Topo) FD(ns string) int {
	tp.T.Helper()
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		tp.T.Fatal(err)
	}
	tp.T.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

// Serve accepts connections on ln until it is closed, in the background,
// and hands each to handle on its own goroutine; handle owns (closes) it.
func Serve(ln net.Listener, handle func(net.Conn)) {
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
}

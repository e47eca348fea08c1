package redirect

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Test topology: two network namespaces joined by a veth pair, addressed
// only inside them. Nothing is created in the caller's namespace; deleting
// the namespaces in t.Cleanup deletes the veth pair and every rule.
//
//	app namespace (the pod: app, proxy, capture rules)   srv namespace (a remote host)
//	  va<id>: 10.250.0.2/24, fd00:250::2/64  <--veth-->    vs<id>: 10.250.0.1/24, .3, fd00:250::1/64
const (
	appIP4 = "10.250.0.2"
	srvIP4 = "10.250.0.1"
	srv2IP = "10.250.0.3" // a second server address, for CIDR exclusion
	appIP6 = "fd00:250::2"
	srvIP6 = "fd00:250::1"
)

var topoSeq atomic.Int32

type topo struct {
	t        testing.TB
	app, srv string
}

// needNetAdmin skips the test unless it runs as root with iptables and
// iproute2 installed.
func needNetAdmin(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (network namespaces and iptables); CI runs tests as root")
	}
	for _, b := range []string{"ip", "iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("skipping: %s not found (apt-get install %s)", b, packageOf(b))
		}
	}
}

func run(t testing.TB, argv ...string) string {
	t.Helper()
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

// newTopo creates the two namespaces and the veth pair.
func newTopo(t testing.TB) *topo {
	t.Helper()
	needNetAdmin(t)
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, topoSeq.Add(1))
	tp := &topo{t: t, app: "ma-app-" + id, srv: "ma-srv-" + id}
	for _, ns := range []string{tp.app, tp.srv} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			// Root without CAP_SYS_ADMIN (an unprivileged container).
			t.Skipf("skipping: cannot create network namespaces here: %v %s", err, out)
		}
		ns := ns
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Logf("cleanup: ip netns del %s: %v %s", ns, err, out)
			}
		})
	}
	va, vs := "va"+id, "vs"+id
	const appMAC, srvMAC = "02:00:0a:fa:00:02", "02:00:0a:fa:00:01"
	run(t, "ip", "-n", tp.app, "link", "add", va, "address", appMAC, "type", "veth", "peer", "name", vs, "address", srvMAC, "netns", tp.srv)
	for _, c := range [][]string{
		{"-n", tp.app, "addr", "add", appIP4 + "/24", "dev", va},
		{"-n", tp.app, "addr", "add", appIP6 + "/64", "dev", va, "nodad"},
		{"-n", tp.app, "link", "set", va, "up"},
		{"-n", tp.app, "link", "set", "lo", "up"},
		{"-n", tp.srv, "addr", "add", srvIP4 + "/24", "dev", vs},
		{"-n", tp.srv, "addr", "add", srv2IP + "/24", "dev", vs},
		{"-n", tp.srv, "addr", "add", srvIP6 + "/64", "dev", vs, "nodad"},
		{"-n", tp.srv, "link", "set", vs, "up"},
		{"-n", tp.srv, "link", "set", "lo", "up"},
		// Static neighbours: the first neighbour solicitation on a fresh
		// veth is lost and retried after 1 s, which would slow every test.
		{"-n", tp.app, "neigh", "replace", srvIP4, "lladdr", srvMAC, "dev", va, "nud", "permanent"},
		{"-n", tp.app, "neigh", "replace", srv2IP, "lladdr", srvMAC, "dev", va, "nud", "permanent"},
		{"-n", tp.app, "neigh", "replace", srvIP6, "lladdr", srvMAC, "dev", va, "nud", "permanent"},
		{"-n", tp.srv, "neigh", "replace", appIP4, "lladdr", appMAC, "dev", vs, "nud", "permanent"},
		{"-n", tp.srv, "neigh", "replace", appIP6, "lladdr", appMAC, "dev", vs, "nud", "permanent"},
	} {
		run(t, append([]string{"ip"}, c...)...)
	}
	return tp
}

// legacyIptables reports whether iptables uses the legacy (x_tables)
// backend, which cannot delete a table once created.
func legacyIptables() bool {
	out, err := exec.Command("iptables", "--version").CombinedOutput()
	return err == nil && strings.Contains(string(out), "legacy")
}

// runner returns a Runner acting inside namespace ns.
func nsRunner(ns string) Runner { return ExecRunner{Prefix: []string{"ip", "netns", "exec", ns}} }

// inNS runs fn on a fresh OS thread that has joined namespace ns. Sockets
// fn creates belong to ns for their whole life, whichever thread later
// uses them. The thread is never returned to the scheduler (it exits with
// the goroutine), so no other goroutine ever runs in ns by accident.
// fsuid, when non-zero, is set on that thread before fn runs, so sockets fn
// creates are owned by that uid as far as `-m owner` is concerned.
func inNS(t testing.TB, ns string, fsuid int, fn func()) {
	t.Helper()
	if err := inNSErr(ns, fsuid, fn); err != nil {
		t.Fatal(err)
	}
}

// inNSErr is inNS for goroutines other than the test's.
func inNSErr(ns string, fsuid int, fn func()) error {
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

// listenIn listens in namespace ns and closes the listener at cleanup.
func (tp *topo) listenIn(ns, network, addr string) net.Listener {
	tp.t.Helper()
	var ln net.Listener
	var err error
	inNS(tp.t, ns, 0, func() { ln, err = net.Listen(network, addr) })
	if err != nil {
		tp.t.Fatalf("listen %s %s in %s: %v", network, addr, ns, err)
	}
	tp.t.Cleanup(func() { ln.Close() })
	return ln
}

// dialIn dials from namespace ns, optionally as fsuid or with a dialer.
func (tp *topo) dialIn(ns string, fsuid int, d *net.Dialer, addr string) (net.Conn, error) {
	if d == nil {
		d = &net.Dialer{}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var c net.Conn
	var err error
	inNS(tp.t, ns, fsuid, func() { c, err = d.DialContext(ctx, "tcp", addr) })
	return c, err
}

// nsDialer returns a dial function whose sockets are created in namespace
// ns by one goroutine locked to a thread in ns (created once, stopped at
// cleanup), so a proxy pays no per-dial namespace switch.
func (tp *topo) nsDialer(ns string, d *net.Dialer) func(ctx context.Context, network, addr string) (net.Conn, error) {
	type req struct {
		ctx           context.Context
		network, addr string
		reply         chan dialResult
	}
	reqs := make(chan req)
	stop := make(chan struct{})
	tp.t.Cleanup(func() { close(stop) })
	go func() {
		_ = inNSErr(ns, 0, func() {
			for {
				select {
				case <-stop:
					return
				case r := <-reqs:
					c, err := d.DialContext(r.ctx, r.network, r.addr)
					r.reply <- dialResult{c, err}
				}
			}
		})
	}()
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		r := req{ctx, network, addr, make(chan dialResult, 1)}
		select {
		case reqs <- r:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		res := <-r.reply
		return res.c, res.err
	}
}

type dialResult struct {
	c   net.Conn
	err error
}

// nsFD opens namespace ns for APIs taking a namespace file descriptor.
func (tp *topo) nsFD(ns string) int {
	tp.t.Helper()
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		tp.t.Fatal(err)
	}
	tp.t.Cleanup(func() { f.Close() })
	return int(f.Fd())
}

func (tp *topo) save(ns string, f Family) string {
	tp.t.Helper()
	return NormalizeSave([]byte(run(tp.t, "ip", "netns", "exec", ns, f.binary("-save"))))
}

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshagent/meshagent/redirect"
)

// Test topology: an app namespace (the pod: app, meshagent, capture rules)
// and a server namespace (a remote host) joined by a veth pair. The subnet
// differs from package redirect's own tests (10.250.0.0/24) so both can
// run at once.
//
//	app: ea<id> 10.251.0.2/24 fd00:251::2/64  <--veth-->  srv: es<id> 10.251.0.1/24 fd00:251::1/64
const (
	appIP4 = "10.251.0.2"
	srvIP4 = "10.251.0.1"
	appIP6 = "fd00:251::2"
	srvIP6 = "fd00:251::1"
	// proxyUID is the uid meshagent runs as: the capture rules' default
	// excluded uid, so its upstream dials are not captured again.
	proxyUID = redirect.DefaultProxyUID
)

var topoSeq atomic.Int32

type topo struct {
	t        testing.TB
	app, srv string
}

// needRoot skips unless the test can create namespaces and program
// iptables, and the meshagent binary was built.
func needRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: needs root (network namespaces, iptables, NFQUEUE); CI runs tests as root")
	}
	for _, b := range []string{"ip", "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("skipping: %s not found (apt-get install iptables iproute2)", b)
		}
	}
	if out, _ := exec.Command("iptables", "--version").CombinedOutput(); strings.Contains(string(out), "legacy") {
		t.Skip("skipping: legacy iptables cannot delete a table again, so remove cannot restore iptables-save exactly; use the nf_tables backend")
	}
	if meshagentBin == "" {
		t.Fatal("meshagent binary was not built")
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

// newTopo creates both namespaces and the veth pair; deleting the
// namespaces at cleanup deletes the pair and every rule in them.
func newTopo(t testing.TB) *topo {
	t.Helper()
	needRoot(t)
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, topoSeq.Add(1))
	tp := &topo{t: t, app: "mae-app-" + id, srv: "mae-srv-" + id}
	for _, ns := range []string{tp.app, tp.srv} {
		if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
			t.Skipf("skipping: cannot create network namespaces here: %v %s", err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", ns).CombinedOutput(); err != nil {
				t.Logf("cleanup: ip netns del %s: %v %s", ns, err, out)
			}
		})
	}
	va, vs := "ea"+id, "es"+id
	const appMAC, srvMAC = "02:00:0a:fb:00:02", "02:00:0a:fb:00:01"
	run(t, "ip", "-n", tp.app, "link", "add", va, "address", appMAC, "type", "veth", "peer", "name", vs, "address", srvMAC, "netns", tp.srv)
	for _, c := range [][]string{
		{"-n", tp.app, "addr", "add", appIP4 + "/24", "dev", va},
		{"-n", tp.app, "addr", "add", appIP6 + "/64", "dev", va, "nodad"},
		{"-n", tp.app, "link", "set", va, "up"},
		{"-n", tp.app, "link", "set", "lo", "up"},
		{"-n", tp.srv, "addr", "add", srvIP4 + "/24", "dev", vs},
		{"-n", tp.srv, "addr", "add", srvIP6 + "/64", "dev", vs, "nodad"},
		{"-n", tp.srv, "link", "set", vs, "up"},
		{"-n", tp.srv, "link", "set", "lo", "up"},
		// Static neighbours: no lost first solicitation, no 1 s retry.
		{"-n", tp.app, "neigh", "replace", srvIP4, "lladdr", srvMAC, "dev", va, "nud", "permanent"},
		{"-n", tp.app, "neigh", "replace", srvIP6, "lladdr", srvMAC, "dev", va, "nud", "permanent"},
		{"-n", tp.srv, "neigh", "replace", appIP4, "lladdr", appMAC, "dev", vs, "nud", "permanent"},
		{"-n", tp.srv, "neigh", "replace", appIP6, "lladdr", appMAC, "dev", vs, "nud", "permanent"},
	} {
		run(t, append([]string{"ip"}, c...)...)
	}
	return tp
}

// inNS runs fn on a fresh OS thread that joined namespace ns; sockets fn
// creates stay in ns, and a process fn starts is born in ns. The thread is
// never handed back to the scheduler (it exits with the goroutine).
func inNS(ns string, fn func()) error {
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
		fn()
		errc <- nil
	}()
	return <-errc
}

// listen listens in namespace ns; the listener is closed at cleanup.
func (tp *topo) listen(ns, addr string) net.Listener {
	tp.t.Helper()
	var ln net.Listener
	var err error
	if nerr := inNS(ns, func() { ln, err = net.Listen("tcp", addr) }); nerr != nil {
		tp.t.Fatal(nerr)
	}
	if err != nil {
		tp.t.Fatalf("listen %s in %s: %v", addr, ns, err)
	}
	tp.t.Cleanup(func() { ln.Close() })
	return ln
}

// dial connects from namespace ns as root (so the connection is captured).
func (tp *topo) dial(ns, addr string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var c net.Conn
	var err error
	if nerr := inNS(ns, func() { c, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr) }); nerr != nil {
		return nil, nerr
	}
	return c, err
}

// nsCmd returns `ip netns exec ns argv...`.
func nsCmd(ns string, argv ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
}

// meshagent runs the meshagent binary as root in ns (the redirect
// subcommand) and returns its combined output.
func (tp *topo) meshagent(ns string, args ...string) string {
	tp.t.Helper()
	out, err := nsCmd(ns, append([]string{meshagentBin}, args...)...).CombinedOutput()
	if err != nil {
		tp.t.Fatalf("meshagent %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// save returns the normalized iptables-save (ip6tables-save for v6) of ns.
func (tp *topo) save(ns string, v6 bool) string {
	tp.t.Helper()
	bin := "iptables-save"
	if v6 {
		bin = "ip6tables-save"
	}
	out, err := nsCmd(ns, bin).Output()
	if err != nil {
		tp.t.Fatalf("%s in %s: %v", bin, ns, err)
	}
	return redirect.NormalizeSave(out)
}

// sidecar is a `meshagent run` process started in the app namespace.
type sidecar struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startSidecar starts `meshagent run args...` in the app namespace as
// proxyUID with CAP_NET_ADMIN (needed for the NFQUEUE gate and for
// iptables when it releases the gate) as its only capability. It is killed
// by its PID at cleanup.
func (tp *topo) startSidecar(args ...string) *sidecar {
	tp.t.Helper()
	cmd := exec.Command(meshagentBin, append([]string{"run"}, args...)...)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Credential:  &syscall.Credential{Uid: proxyUID, Gid: redirect.DefaultProxyGID},
		AmbientCaps: []uintptr{unix.CAP_NET_ADMIN},
		// No Pdeathsig: it fires when the starting thread exits, and the
		// namespace thread exits right after Start. Cleanup kills by PID.
	}
	s := &sidecar{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.out, s.out
	var err error
	if nerr := inNS(tp.app, func() { err = cmd.Start() }); nerr != nil {
		tp.t.Fatal(nerr)
	}
	if err != nil {
		tp.t.Fatalf("start meshagent run: %v", err)
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	tp.t.Cleanup(func() {
		s.kill()
		if tp.t.Failed() {
			tp.t.Logf("meshagent run output:\n%s", s.out.String())
		}
	})
	return s
}

// kill sends SIGKILL to the sidecar's PID and waits for it to exit.
func (s *sidecar) kill() {
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// exited reports whether the sidecar has exited.
func (s *sidecar) exited() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// syncBuffer is a bytes.Buffer safe for the process's writes and the
// test's reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

package e2e

import (
	"bytes"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/meshagent/meshagent/redirect"
	"github.com/meshagent/meshagent/redirect/netnstest"
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

// topo is the test topology with this package's helpers on it.
type topo struct{ *netnstest.Topo }

// needRoot skips unless the test can create namespaces and program
// iptables, and the meshagent binary was built.
func needRoot(t testing.TB) {
	t.Helper()
	netnstest.NeedRoot(t, "network namespaces, iptables, NFQUEUE")
	netnstest.NeedBinaries(t, "ip", "iptables-save", "iptables-restore", "ip6tables-save", "ip6tables-restore")
	if netnstest.LegacyIptables() {
		t.Skip("skipping: legacy iptables cannot delete a table again, so remove cannot restore iptables-save exactly; use the nf_tables backend")
	}
	if meshagentBin == "" {
		t.Fatal("meshagent binary was not built")
	}
}

// newTopo creates both namespaces and the veth pair; deleting the
// namespaces at cleanup deletes the pair and every rule in them.
func newTopo(t testing.TB) *topo {
	t.Helper()
	needRoot(t)
	return &topo{netnstest.New(t, netnstest.Config{
		Name: "mae",
		Veth: "e",
		App:  []string{appIP4 + "/24", appIP6 + "/64"},
		Srv:  []string{srvIP4 + "/24", srvIP6 + "/64"},
	})}
}

// listen listens on TCP in namespace ns; the listener is closed at cleanup.
func (tp *topo) listen(ns, addr string) net.Listener { return tp.Listen(ns, "tcp", addr) }

// dial connects from namespace ns as root (so the connection is captured).
func (tp *topo) dial(ns, addr string, timeout time.Duration) (net.Conn, error) {
	return tp.Dial(ns, 0, nil, addr, timeout)
}

// meshagent runs the meshagent binary as root in ns (the redirect
// subcommand) and returns its combined output.
func (tp *topo) meshagent(ns string, args ...string) string {
	tp.T.Helper()
	out, err := netnstest.Cmd(ns, append([]string{meshagentBin}, args...)...).CombinedOutput()
	if err != nil {
		tp.T.Fatalf("meshagent %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// save returns the normalized iptables-save (ip6tables-save for v6) of ns.
func (tp *topo) save(ns string, v6 bool) string {
	tp.T.Helper()
	bin := "iptables-save"
	if v6 {
		bin = "ip6tables-save"
	}
	out, err := netnstest.Cmd(ns, bin).Output()
	if err != nil {
		tp.T.Fatalf("%s in %s: %v", bin, ns, err)
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
	tp.T.Helper()
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
	tp.In(tp.App, 0, func() { err = cmd.Start() })
	if err != nil {
		tp.T.Fatalf("start meshagent run: %v", err)
	}
	go func() { _ = cmd.Wait(); close(s.done) }()
	tp.T.Cleanup(func() {
		s.kill()
		if tp.T.Failed() {
			tp.T.Logf("meshagent run output:\n%s", s.out.String())
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

package redirect

import (
	"testing"
	"time"

	"github.com/meshagent/meshagent/redirect/netnstest"
)

// Test topology: two network namespaces joined by a veth pair, built by
// netnstest (nothing is created in the caller's namespace).
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

// dialTimeout bounds every test dial.
const dialTimeout = 15 * time.Second

// topo is the test topology with this package's helpers on it.
type topo struct{ *netnstest.Topo }

// needNetAdmin skips the test unless it runs as root with iptables and
// iproute2 installed.
func needNetAdmin(t testing.TB) {
	t.Helper()
	netnstest.NeedRoot(t, "network namespaces and iptables")
	netnstest.NeedBinaries(t, "ip", "iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save")
}

// newTopo creates the two namespaces and the veth pair.
func newTopo(t testing.TB) *topo {
	t.Helper()
	needNetAdmin(t)
	return &topo{netnstest.New(t, netnstest.Config{
		Name: "ma",
		Veth: "v",
		App:  []string{appIP4 + "/24", appIP6 + "/64"},
		Srv:  []string{srvIP4 + "/24", srv2IP + "/24", srvIP6 + "/64"},
	})}
}

// nsRunner returns a Runner acting inside namespace ns.
func nsRunner(ns string) Runner { return ExecRunner{Prefix: []string{"ip", "netns", "exec", ns}} }

// save returns the normalized iptables-save (ip6tables-save for IPv6) of ns.
func (tp *topo) save(ns string, f Family) string {
	tp.T.Helper()
	return NormalizeSave([]byte(netnstest.Run(tp.T, "ip", "netns", "exec", ns, f.binary("-save"))))
}

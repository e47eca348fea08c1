// Package e2e holds the xDS end-to-end tests: go-control-plane's real
// server over gRPC on loopback, the xDS client, the validating store and
// the data plane carrying real traffic to loopback backends.
package e2e

import (
	"fmt"
	"net"
	"testing"

	"github.com/meshagent/meshagent/xds/translate"
	"github.com/meshagent/meshagent/xds/xdstest"
)

// listenerAddrs is what waitListeners needs of the data plane.
type listenerAddrs interface {
	ListenerAddr(id string) (net.Addr, bool)
}

// waitListeners waits until the data plane has bound the listeners
// translated from the named xDS listeners.
func waitListeners(t testing.TB, dp listenerAddrs, names ...string) {
	t.Helper()
	xdstest.Eventually(t, "listeners bound", func() bool {
		for _, n := range names {
			if _, ok := dp.ListenerAddr(translate.ObjectID(n)); !ok {
				return false
			}
		}
		return true
	})
}

// waitApplied waits until the data plane serves a snapshot of the store's
// current revision: a ready client has written its config into the store,
// which the data plane compiles a moment later.
func waitApplied(t testing.TB, dp interface{ Revision() int64 }, st interface{ Rev() int64 }) {
	t.Helper()
	rev := st.Rev()
	xdstest.Eventually(t, fmt.Sprintf("data plane at store revision %d", rev), func() bool { return dp.Revision() >= rev })
}

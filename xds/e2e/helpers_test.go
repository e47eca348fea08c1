// Package e2e holds the xDS end-to-end tests: go-control-plane's real
// server over gRPC on loopback, the xDS client, the validating store and
// the data plane carrying real traffic to loopback backends.
package e2e

import (
	"net"

	"github.com/meshagent/meshagent/xds/translate"
	"log/slog"
	"os"
	"testing"
	"time"
)

func testLogger(testing.TB) *slog.Logger {
	if os.Getenv("XDS_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// eventually polls cond until it holds or 10 s pass.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// listenerAddrs is what waitListeners needs of the data plane.
type listenerAddrs interface {
	ListenerAddr(id string) (net.Addr, bool)
}

// waitListeners waits until the data plane has bound the listeners
// translated from the named xDS listeners.
func waitListeners(t testing.TB, dp listenerAddrs, names ...string) {
	t.Helper()
	eventually(t, "listeners bound", func() bool {
		for _, n := range names {
			if _, ok := dp.ListenerAddr(translate.ObjectID(n)); !ok {
				return false
			}
		}
		return true
	})
}

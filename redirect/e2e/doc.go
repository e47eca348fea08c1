// Package e2e holds the end-to-end tests of traffic capture with the real
// meshagent binary: capture rules installed by `meshagent redirect
// install` inside a network namespace the test creates, `meshagent run
// --capture-outbound` serving the captured connections as the proxy uid,
// the startup gate holding a connection opened before the sidecar started,
// and `meshagent redirect remove` restoring the ruleset exactly.
//
// It has no non-test code. The tests need root, iproute2 and iptables
// (CI runs them as root on Debian 12); elsewhere they skip with the reason.
// They own nothing outside the namespaces they create, all of which are
// deleted in t.Cleanup together with every process they started.
package e2e

package mtlstest

import (
	"bufio"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// echoServer is a TCP server answering each line with "echo: " + line.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					if _, err := io.WriteString(c, "echo: "+line); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// TCP services: the client meshagent's tcp chain originates mTLS to the
// server meshagent's tcp chain, which terminates it and proxies to a
// plain TCP server; a client without a mesh certificate is refused.
func TestTCPOverMTLS(t *testing.T) {
	ca := mustCA(t, "mesh")
	echo := echoServer(t)
	srv, cli := newAgent(t), newAgent(t)
	srv.identity(ca.MustIssue("spiffe://default/db", time.Hour, ECDSA), ca.PEM)
	srv.put("/apisix/stream_routes/in-db", map[string]any{
		"upstream": map[string]any{"type": "roundrobin", "nodes": []map[string]any{{"host": "127.0.0.1", "port": portOf(echo), "weight": 1}}},
	})
	c := mtlsChain("mtls", "", nil, nil)
	delete(c, "route_config")
	c["kind"], c["stream_route_id"] = "tcp", "in-db"
	srv.put("/meshagent/listeners/inbound", map[string]any{"address": "127.0.0.1:0", "direction": "inbound", "filter_chains": []map[string]any{c}})
	srvAddr := srv.listenerAddr("inbound")

	cli.identity(ca.MustIssue("spiffe://default/web", time.Hour, ECDSA), ca.PEM)
	cli.upstream(srvAddr, "spiffe://default/db")
	cli.put("/apisix/stream_routes/out-db", map[string]any{"upstream_id": "backend"})
	cli.put("/meshagent/listeners/outbound", map[string]any{"address": "127.0.0.1:0", "direction": "outbound",
		"filter_chains": []map[string]any{{"name": "out", "kind": "tcp", "stream_route_id": "out-db"}}})
	entry := cli.listenerAddr("outbound")

	conn, err := net.DialTimeout("tcp", entry, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	for _, msg := range []string{"select 1\n", "select 2\n"} {
		if _, err := io.WriteString(conn, msg); err != nil {
			t.Fatal(err)
		}
		got, err := r.ReadString('\n')
		if err != nil || got != "echo: "+msg {
			t.Fatalf("got %q (%v), want echo of %q\nclient logs:\n%s\nserver logs:\n%s", got, err, msg, cli.logs, srv.logs)
		}
	}
	// Plaintext TCP straight to the inbound listener is refused.
	raw, err := net.DialTimeout("tcp", srvAddr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(3 * time.Second))
	_, _ = io.WriteString(raw, "select 3\n")
	if line, err := bufio.NewReader(raw).ReadString('\n'); err == nil || strings.Contains(line, "echo") {
		t.Fatalf("plaintext TCP proxied: %q", line)
	}
	srv.logs.waitFor(t, "plaintext connection refused")
}

package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshagent/meshagent/xds/controlplane"
	"github.com/meshagent/meshagent/xds/xdstest"
)

// testPKI returns a CA PEM and a server certificate for 127.0.0.1 signed by it.
func testPKI(t *testing.T) ([]byte, tls.Certificate) {
	t.Helper()
	ca := xdstest.NewCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "test-ca"}, IsCA: true,
		BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}, nil)
	srv := xdstest.NewCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "istiod"},
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, ca)
	return ca.CertPEM(), srv.TLS()
}

// TestTLSAndRotatingToken: TLS to the control plane with a CA file, a
// bearer token from a file checked by the server, and the file re-read
// after rotation.
func TestTLSAndRotatingToken(t *testing.T) {
	caPEM, cert := testPKI(t)
	dir := t.TempDir()
	caFile, tokFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "token")
	if err := os.WriteFile(caFile, caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(tokFile, []byte("token-1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var want atomic.Value
	want.Store("Bearer token-1")
	var rejected atomic.Int64
	auth := grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		md, _ := metadata.FromIncomingContext(ss.Context())
		if got := md.Get("authorization"); len(got) != 1 || got[0] != want.Load().(string) {
			rejected.Add(1)
			return status.Error(codes.Unauthenticated, "bad token")
		}
		return h(srv, ss)
	})
	creds := grpc.Creds(credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}}))
	cp, err := controlplane.Start("127.0.0.1:0", xdstest.Logger(t), creds, auth)
	if err != nil {
		t.Fatal(err)
	}
	addr := cp.Addr()
	cfg := baseConfig("127.0.0.1:9001", "127.0.0.1:9002")
	if err := cp.SetSnapshot(context.Background(), testNode, "v1", cfg); err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	node, _ := BuildNode(NodeConfig{ID: testNode}, "test")
	cl, stop := startClient(t, Options{Addr: addr, TLSCAFile: caFile, TokenFile: tokFile, Node: node, Handler: NewApplier(st, ApplierOptions{}),
		Logger: xdstest.Logger(t), BackoffMin: 20 * time.Millisecond, BackoffMax: 100 * time.Millisecond})
	defer stop()
	xdstest.WaitReady(t, cl, "over TLS with token")

	// Rotate: the server now only accepts token-2; the client re-reads the
	// file on its next stream.
	if err := os.WriteFile(tokFile, []byte("token-2-rotated\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	want.Store("Bearer token-2-rotated")
	cp.Stop()
	var lis net.Listener
	xdstest.Eventually(t, "rebind", func() bool { lis, err = net.Listen("tcp", addr); return err == nil })
	cp = controlplane.Serve(lis, xdstest.Logger(t), creds, auth)
	defer cp.Stop()
	if err := cp.SetSnapshot(context.Background(), testNode, "v2", cfg); err != nil {
		t.Fatal(err)
	}
	xdstest.Eventually(t, "resync with the rotated token", func() bool {
		return statusOf(cl, 0).Version == "v2"
	})
	if rejected.Load() != 0 {
		t.Errorf("%d streams were rejected for a stale token", rejected.Load())
	}
}

func TestTokenRefusedInClearText(t *testing.T) {
	node, _ := BuildNode(NodeConfig{ID: "n"}, "test")
	c, err := New(Options{Addr: "10.1.2.3:15010", TokenFile: "/nonexistent", Node: node, Handler: NewApplier(nil, ApplierOptions{})})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(context.Background()); err == nil {
		t.Fatal("a token over plaintext to a non-loopback address was accepted")
	}
}

package netnstest

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

func TestMacOf(t *testing.T) {
	for _, tc := range []struct {
		addrs   []string
		want    string
		wantErr string
	}{
		{[]string{"10.250.0.2/24", "fd00:250::2/64"}, "02:00:0a:fa:00:02", ""},
		{[]string{"fd00:251::1/64", "10.251.0.1/24"}, "02:00:0a:fb:00:01", ""},
		{[]string{"fd00::1/64"}, "", "no IPv4 address"},
		{[]string{"10.0.0.1"}, "", `address "10.0.0.1"`},
	} {
		got, err := macOf(tc.addrs)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("macOf(%v) error %v, want %q", tc.addrs, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("macOf(%v) = %q, %v; want %q", tc.addrs, got, err, tc.want)
		}
	}
}

// TestTopology builds a topology and checks that the app namespace
// reaches the server over IPv4 and IPv6 from its own addresses, with Dial
// and with Dialer, and that the neighbour entries are static.
func TestTopology(t *testing.T) {
	NeedRoot(t, "network namespaces")
	NeedBinaries(t, "ip")
	tp := New(t, Config{
		Name: "mnt",
		Veth: "n",
		App:  []string{"10.252.0.2/24", "fd00:252::2/64"},
		Srv:  []string{"10.252.0.1/24", "fd00:252::1/64"},
	})
	ln := tp.Listen(tp.Srv, "tcp", ":9000")
	peers := make(chan string, 4)
	Serve(ln, func(c net.Conn) {
		peers <- c.RemoteAddr().(*net.TCPAddr).IP.String()
		c.Close()
	})
	dialer := tp.Dialer(tp.App, &net.Dialer{})
	for _, tc := range []struct{ dst, from string }{
		{"10.252.0.1:9000", "10.252.0.2"},
		{"[fd00:252::1]:9000", "fd00:252::2"},
	} {
		c, err := tp.Dial(tp.App, 0, nil, tc.dst, 5*time.Second)
		if err != nil {
			t.Fatalf("Dial %s: %v", tc.dst, err)
		}
		c.Close()
		if got := <-peers; got != tc.from {
			t.Fatalf("Dial %s: server saw %s, want %s", tc.dst, got, tc.from)
		}
		c, err = dialer(context.Background(), "tcp", tc.dst)
		if err != nil {
			t.Fatalf("Dialer %s: %v", tc.dst, err)
		}
		c.Close()
		if got := <-peers; got != tc.from {
			t.Fatalf("Dialer %s: server saw %s, want %s", tc.dst, got, tc.from)
		}
	}
	if out := Run(t, "ip", "-n", tp.App, "neigh", "show", "10.252.0.1"); !strings.Contains(out, "PERMANENT") {
		t.Fatalf("no static neighbour entry in the app namespace: %q", out)
	}
}

// TestNewNamespace: a lone namespace has loopback up and is reachable by
// name for Cmd and Do.
func TestNewNamespace(t *testing.T) {
	NeedRoot(t, "network namespaces")
	NeedBinaries(t, "ip")
	ns := NewNamespace(t, "mnt-one")
	if !strings.HasPrefix(ns, "mnt-one-") {
		t.Fatalf("namespace name %q", ns)
	}
	out, err := Cmd(ns, "ip", "-o", "link", "show", "lo").CombinedOutput()
	if err != nil || !strings.Contains(string(out), ",UP") {
		t.Fatalf("lo in %s: %v %s", ns, err, out)
	}
	var addrs []net.Addr
	if err := Do(ns, 0, func() { addrs, err = net.InterfaceAddrs() }); err != nil || len(addrs) == 0 {
		t.Fatalf("addresses in %s: %v %v", ns, addrs, err)
	}
	for _, a := range addrs {
		if ip := a.(*net.IPNet).IP; !ip.IsLoopback() {
			t.Fatalf("%s has a non-loopback address %v", ns, ip)
		}
	}
}

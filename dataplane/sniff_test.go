package dataplane

import (
	"crypto/tls"
	"math"
	"net"
	"slices"
	"testing"
	"time"
)

// clientHello captures the first flight of a real crypto/tls client.
func clientHello(t testing.TB, sni string, alpn []string) []byte {
	a, b := net.Pipe()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true})
		_ = c.SetDeadline(time.Now().Add(time.Second))
		_ = c.Handshake()
		a.Close()
	}()
	buf := make([]byte, 16384)
	b.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := b.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	// The record may arrive in pieces; read until complete.
	for n < 5 || n < 5+int(buf[3])<<8|int(buf[4]) {
		m, err := b.Read(buf[n:])
		if err != nil {
			t.Fatal(err)
		}
		n += m
	}
	b.Close()
	return buf[:n]
}

func TestParseClientHello(t *testing.T) {
	cases := []struct {
		sni  string
		alpn []string
	}{
		{"a.example.com", []string{"h2", "http/1.1"}},
		{"x.test", nil},
		{"", []string{"istio-peer-exchange", "istio"}},
	}
	for _, c := range cases {
		hello := clientHello(t, c.sni, c.alpn)
		if p, more := classify(hello); p != protoTLS || more {
			t.Fatalf("classify = %v more=%v", p, more)
		}
		sni, alpn, err := parseClientHello(hello)
		if err != nil {
			t.Fatal(err)
		}
		if sni != c.sni || !slices.Equal(alpn, c.alpn) {
			t.Fatalf("got %q %v, want %q %v", sni, alpn, c.sni, c.alpn)
		}
		// Every truncation is rejected or parsed, never a panic.
		for i := range hello {
			_, _, _ = parseClientHello(hello[:i])
		}
	}
}

func TestClassify(t *testing.T) {
	cases := []struct {
		in   string
		want proto
		more bool
	}{
		{"", protoOpaque, true},
		{"GE", protoHTTP1, true},
		{"GET / HTTP/1.1\r\n", protoHTTP1, false},
		{"DELETE /x", protoHTTP1, false},
		{"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", protoH2, false},
		{"PRI * HTTP/2", protoH2, true},
		{"\x16\x03\x01", protoTLS, true},
		{"SSH-2.0-OpenSSH", protoOpaque, false},
		{"\x00\x00\x00\x01", protoOpaque, false},
		{"GETX", protoHTTP1, true},
		{"PROPFIND /dav HTTP/1.1", protoHTTP1, false},
		{"get / HTTP/1.1", protoOpaque, false},
		{" GET", protoOpaque, false},
		{"ABCDEFGHIJKLMNOPQRSTUVWXYZ", protoOpaque, false},
		{"220 smtp.example.com", protoOpaque, false},
	}
	for _, c := range cases {
		p, more := classify([]byte(c.in))
		if p != c.want || more != c.more {
			t.Errorf("classify(%q) = %v,%v want %v,%v", c.in, p, more, c.want, c.more)
		}
	}
}

func TestParseGRPCTimeout(t *testing.T) {
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"100m", 100 * time.Millisecond, true},
		{"5S", 5 * time.Second, true},
		{"1H", time.Hour, true},
		{"7u", 7 * time.Microsecond, true},
		{"m", 0, false},
		{"12x", 0, false},
		{"-1S", 0, false},
		{"123456789S", 0, false},
		{"99999999H", time.Duration(math.MaxInt64), true},
	}
	for _, c := range cases {
		got, ok := parseGRPCTimeout(c.in)
		if got != c.want || ok != c.ok {
			t.Errorf("parseGRPCTimeout(%q) = %v,%v want %v,%v", c.in, got, ok, c.want, c.ok)
		}
	}
}

func FuzzParseClientHello(f *testing.F) {
	f.Add(clientHello(f, "a.example.com", []string{"h2"}))
	f.Add([]byte{0x16, 3, 1, 0, 4, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		sni, _, err := parseClientHello(b)
		if err == nil && len(sni) > len(b) {
			t.Fatalf("sni longer than input")
		}
		classify(b)
	})
}

func FuzzParseGRPCTimeout(f *testing.F) {
	for _, s := range []string{"100m", "5S", "1H", "x", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if d, ok := parseGRPCTimeout(s); ok && d < 0 {
			t.Fatalf("negative timeout %v from %q", d, s)
		}
	})
}

package backend

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func TestCodecRoundTrip(t *testing.T) {
	for _, data := range [][]byte{nil, []byte("x"), bytes.Repeat([]byte("y"), 300)} {
		b, err := Codec{}.Marshal(&Message{Data: data})
		if err != nil {
			t.Fatal(err)
		}
		var m Message
		if err := (Codec{}).Unmarshal(b, &m); err != nil || !bytes.Equal(m.Data, data) {
			t.Errorf("round trip of %d bytes: %v, got %d bytes", len(data), err, len(m.Data))
		}
	}
	if _, err := (Codec{}).Marshal("str"); err == nil {
		t.Error("Marshal of a string must fail")
	}
}

func TestParseMessage(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want []byte
		err  bool
	}{
		{"empty", nil, nil, false},
		{"data", []byte{0x0a, 2, 'h', 'i'}, []byte("hi"), false},
		{"unknown varint field skipped", []byte{0x10, 0x96, 0x01, 0x0a, 1, 'z'}, []byte("z"), false},
		{"unknown fixed fields skipped", []byte{0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x25, 1, 2, 3, 4, 0x0a, 1, 'q'}, []byte("q"), false},
		{"truncated length", []byte{0x0a, 5, 'a'}, nil, true},
		{"huge length", []byte{0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, nil, true},
		{"field zero", []byte{0x02, 0}, nil, true},
		{"group wire type", []byte{0x0b}, nil, true},
		{"short fixed64", []byte{0x09, 1}, nil, true},
		{"bad tag", []byte{0x80}, nil, true},
	}
	for _, tc := range tests {
		got, err := ParseMessage(tc.in)
		if (err != nil) != tc.err || (err != nil && !errors.Is(err, ErrMessage)) || !bytes.Equal(got, tc.want) {
			t.Errorf("%s: ParseMessage = %q, %v", tc.name, got, err)
		}
	}
}

func FuzzParseMessage(f *testing.F) {
	f.Add([]byte{0x0a, 2, 'h', 'i'})
	f.Add([]byte{0x10, 0x96, 0x01})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := ParseMessage(b)
		if err != nil {
			return
		}
		// Whatever parsed re-encodes and parses to the same data.
		d2, err := ParseMessage(AppendMessage(nil, d))
		if err != nil || !bytes.Equal(d, d2) {
			t.Fatalf("re-parse: %v %q %q", err, d, d2)
		}
	})
}

func TestServerProtocols(t *testing.T) {
	s, err := Start(Config{BodySize: 10})
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	}()
	// HTTP/1.1 with a request shorter than the h2 preface.
	c, err := net.Dial("tcp", s.HTTPAddr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("GET / HTTP/1.0\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(c)
	c.Close()
	if !bytes.HasPrefix(b, []byte("HTTP/1.0 200")) && !bytes.HasPrefix(b, []byte("HTTP/1.1 200")) || !bytes.HasSuffix(b, []byte("xxxxxxxxxx")) {
		t.Errorf("http/1 response %q", b)
	}
	// gRPC unary and stream.
	cc, err := grpc.NewClient("passthrough:///"+s.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.ForceCodec(Codec{})))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out Message
	if err := cc.Invoke(ctx, EchoUnaryMethod, &Message{Data: []byte("ping")}, &out); err != nil || string(out.Data) != "ping" {
		t.Errorf("unary: %v %q", err, out.Data)
	}
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true, ClientStreams: true}, EchoStreamMethod)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "bb"} {
		if err := st.SendMsg(&Message{Data: []byte(m)}); err != nil {
			t.Fatal(err)
		}
		if err := st.RecvMsg(&out); err != nil || string(out.Data) != m {
			t.Errorf("stream: %v %q", err, out.Data)
		}
	}
	// TCP bulk: two transfers, each acknowledged with its length.
	tc, err := net.Dial("tcp", s.TCPAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.Write([]byte{ModeBulk})
	for _, n := range []uint64{5, 70000} {
		var hdr [8]byte
		binary.BigEndian.PutUint64(hdr[:], n)
		tc.Write(hdr[:])
		tc.Write(make([]byte, n))
		var ack [8]byte
		if _, err := io.ReadFull(tc, ack[:]); err != nil || ack != hdr {
			t.Errorf("bulk ack %x %v", ack, err)
		}
	}
	if s.Requests() != 4 {
		t.Errorf("requests = %d, want 4", s.Requests())
	}
	// Unknown TCP mode: closed.
	uc, _ := net.Dial("tcp", s.TCPAddr)
	uc.Write([]byte{'?'})
	uc.SetReadDeadline(time.Now().Add(2 * time.Second))
	if _, err := uc.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("unknown mode: read err %v, want EOF", err)
	}
	uc.Close()
}

func TestStallOnce(t *testing.T) {
	s, err := Start(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	get := func() time.Duration {
		t0 := time.Now()
		c, err := net.Dial("tcp", s.HTTPAddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET / HTTP/1.0\r\n\r\n"))
		io.ReadAll(c)
		return time.Since(t0)
	}
	s.StallOnce(500 * time.Millisecond)
	if d := get(); d < 490*time.Millisecond {
		t.Errorf("stalled request took %v", d)
	}
	if d := get(); d > 400*time.Millisecond {
		t.Errorf("second request took %v: the stall must happen once", d)
	}
	if _, err := Start(Config{BodySize: -1}); err == nil {
		t.Error("negative body size accepted")
	}
}

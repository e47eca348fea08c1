package dataplane

import (
	"bytes"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// decodeBlock decodes a header block with x/net's decoder.
func decodeBlock(t testing.TB, blk []byte) []hpack.HeaderField {
	t.Helper()
	var got []hpack.HeaderField
	d := hpack.NewDecoder(4096, func(f hpack.HeaderField) { got = append(got, f) })
	if _, err := d.Write(blk); err != nil {
		t.Fatalf("decode %x: %v", blk, err)
	}
	if err := d.Close(); err != nil {
		t.Fatalf("decode %x: %v", blk, err)
	}
	return got
}

func TestH2EncoderRoundTrip(t *testing.T) {
	long := string(bytes.Repeat([]byte("v"), 300)) // multi-byte lengths
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":status", Value: "200"},
		{Name: ":status", Value: "503"},
		{Name: ":path", Value: "/grpc.testing.TestService/UnaryCall"},
		{Name: ":authority", Value: "a.example:8080"},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "te", Value: "trailers"},
		{Name: "accept-encoding", Value: "gzip, deflate"},
		{Name: "x-long", Value: long},
		{Name: long, Value: ""},
		{Name: "authorization", Value: "secret", Sensitive: true},
		{Name: "x-secret", Value: "s", Sensitive: true},
		{Name: "www-authenticate", Value: "Basic"},
	}
	var buf bytes.Buffer
	e := newH2Encoder(&buf)
	for _, f := range fields {
		if err := e.WriteField(f); err != nil {
			t.Fatal(err)
		}
	}
	got := decodeBlock(t, buf.Bytes())
	if len(got) != len(fields) {
		t.Fatalf("decoded %d fields, want %d", len(got), len(fields))
	}
	for i := range fields {
		if got[i] != fields[i] {
			t.Errorf("field %d: %+v, want %+v", i, got[i], fields[i])
		}
	}
	// Exact static entries are one byte; the block leaves the peer's
	// dynamic table empty, so a second block decodes alike on its own.
	buf.Reset()
	_ = e.WriteField(hpack.HeaderField{Name: ":status", Value: "200"})
	if !bytes.Equal(buf.Bytes(), []byte{0x88}) {
		t.Fatalf(":status 200 encoded %x, want 88", buf.Bytes())
	}
}

// Every static name index matches x/net's table (Appendix A).
func TestH2EncoderStaticNames(t *testing.T) {
	for i := 1; i <= 61; i++ {
		var buf bytes.Buffer
		e := newH2Encoder(&buf)
		e.int(0, 4, uint64(i))
		e.str("x")
		name := decodeBlock(t, buf.Bytes())[0].Name
		if got := h2StaticName(name); got == 0 || got > i {
			t.Errorf("static %d %q: h2StaticName %d", i, name, got)
		}
	}
}

func FuzzH2Encoder(f *testing.F) {
	f.Add(":path", "/a", false)
	f.Add("x", "", true)
	f.Add(":status", "200", false)
	f.Fuzz(func(t *testing.T, name, value string, sensitive bool) {
		var buf bytes.Buffer
		e := newH2Encoder(&buf)
		in := hpack.HeaderField{Name: name, Value: value, Sensitive: sensitive}
		_ = e.WriteField(in)
		_ = e.WriteField(in)
		got := decodeBlock(t, buf.Bytes())
		if len(got) != 2 || got[0] != in || got[1] != in {
			t.Fatalf("round trip of %+v: %+v", in, got)
		}
	})
}

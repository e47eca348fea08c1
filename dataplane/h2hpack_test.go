package dataplane

import (
	"bytes"
	"fmt"
	"strings"
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
	// Exact static entries are one byte.
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

// encodeBlocks encodes blocks of fields with one encoder and decodes them
// with one decoder, as on a connection, and checks every field came back;
// limits[i], when not 0, is a SETTINGS_HEADER_TABLE_SIZE the decoder's
// side announces before block i. It returns the block sizes.
func encodeBlocks(t testing.TB, blocks [][]hpack.HeaderField, limits []uint32) []int {
	t.Helper()
	var buf bytes.Buffer
	e := newH2Encoder(&buf)
	var got []hpack.HeaderField
	d := hpack.NewDecoder(4096, func(f hpack.HeaderField) { got = append(got, f) })
	var sizes []int
	for i, blk := range blocks {
		if i < len(limits) && limits[i] != 0 {
			d.SetAllowedMaxDynamicTableSize(limits[i])
			e.SetMaxDynamicTableSizeLimit(limits[i])
		}
		buf.Reset()
		for _, f := range blk {
			_ = e.WriteField(f)
		}
		sizes = append(sizes, buf.Len())
		got = got[:0]
		if _, err := d.Write(buf.Bytes()); err != nil {
			t.Fatalf("block %d %x: %v", i, buf.Bytes(), err)
		}
		if err := d.Close(); err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if len(got) != len(blk) {
			t.Fatalf("block %d: %d fields, want %d", i, len(got), len(blk))
		}
		for j := range blk {
			if got[j].Name != blk[j].Name || got[j].Value != blk[j].Value {
				t.Fatalf("block %d field %d: %+v, want %+v", i, j, got[j], blk[j])
			}
		}
	}
	return sizes
}

// A field repeated on a connection goes as one index; values that change
// with each message are literals; the table follows evictions and a
// smaller limit from the peer (a size update opens the next block).
func TestH2EncoderDynamicTable(t *testing.T) {
	req := func(path, timeout string) []hpack.HeaderField {
		return []hpack.HeaderField{
			{Name: ":method", Value: "POST"}, {Name: ":scheme", Value: "http"},
			{Name: ":authority", Value: "svc.ns.svc.cluster.local:8080"},
			{Name: ":path", Value: path},
			{Name: "content-type", Value: "application/grpc"},
			{Name: "te", Value: "trailers"},
			{Name: "user-agent", Value: "grpc-go/1.85.0"},
			{Name: "grpc-timeout", Value: timeout},
			{Name: "x-forwarded-for", Value: "10.0.0.7"},
		}
	}
	blocks := [][]hpack.HeaderField{
		req("/pkg.Svc/A", "4999m"), req("/pkg.Svc/A", "4998m"), req("/pkg.Svc/B", "10S"), req("/pkg.Svc/A", "1m"),
	}
	sizes := encodeBlocks(t, blocks, nil)
	// The second block: 8 one-byte indexes and grpc-timeout's literal
	// (name "grpc-timeout" and value "4998m": 1+1+12+1+5).
	if sizes[1] != 8+20 {
		t.Errorf("second block %d bytes, want 28 (block sizes %v)", sizes[1], sizes)
	}
	if sizes[0] <= sizes[1]*2 {
		t.Errorf("first block %d bytes, not much larger than the second's %d", sizes[0], sizes[1])
	}

	// Many distinct values evict old entries; a lowered limit, then 0.
	var many [][]hpack.HeaderField
	for i := range 400 {
		many = append(many, []hpack.HeaderField{
			{Name: ":authority", Value: "a.example"},
			{Name: "x-id", Value: strings.Repeat("v", i%50) + string(rune('a'+i%26))},
			{Name: fmt.Sprintf("x-name-%d", i%40), Value: "same"},
			{Name: ":path", Value: fmt.Sprintf("/p/%d", i%7)},
		})
	}
	limits := make([]uint32, len(many))
	limits[100], limits[200], limits[300] = 1024, 0, 4096
	encodeBlocks(t, many, limits)
}

func FuzzH2EncoderBlocks(f *testing.F) {
	f.Add([]byte("\x00a\x01b\x00a\x01b\x02c"), uint16(0))
	f.Add([]byte(":path/x:path/y:path/x"), uint16(100))
	f.Fuzz(func(t *testing.T, data []byte, limit uint16) {
		names := []string{":path", ":authority", "content-type", "x-a", "x-b", "te", "grpc-timeout", "cookie"}
		var blocks [][]hpack.HeaderField
		var blk []hpack.HeaderField
		for i := 0; i+1 < len(data); i += 2 {
			n, v := data[i], data[i+1]
			if n == 0xff {
				blocks, blk = append(blocks, blk), nil
				continue
			}
			blk = append(blk, hpack.HeaderField{Name: names[int(n)%len(names)], Value: strings.Repeat(string(rune('a'+v%26)), int(v)%300)})
		}
		blocks = append(blocks, blk)
		limits := make([]uint32, len(blocks))
		if len(blocks) > 1 {
			limits[len(blocks)/2] = uint32(limit) % 5000
			if limits[len(blocks)/2] == 0 {
				limits[len(blocks)/2] = 1 // 0 means unchanged in encodeBlocks
			}
		}
		encodeBlocks(t, blocks, limits)
	})
}

package dataplane

import (
	"bytes"
	"net/http/httputil"
	"testing"
)

// chunkedBody is 64 KiB of data in chunks of 4 KiB, as a streaming
// upstream writes it.
func chunkedBody() []byte {
	var enc bytes.Buffer
	w := httputil.NewChunkedWriter(&enc)
	piece := bytes.Repeat([]byte("x"), 4<<10)
	for range 16 {
		_, _ = w.Write(piece)
	}
	_ = w.Close()
	enc.WriteString("\r\n")
	return enc.Bytes()
}

// BenchmarkChunkScanner is the event loop's cost of finding the end of a
// chunked body it relays, read 16 KiB at a time.
func BenchmarkChunkScanner(b *testing.B) {
	body := chunkedBody()
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		var s chunkScanner
		for off := 0; off < len(body); off += 16 << 10 {
			if _, _, err := s.feed(body[off:min(len(body), off+16<<10)]); err != nil {
				b.Fatal(err)
			}
		}
		if !s.done() {
			b.Fatal("body not ended")
		}
	}
}

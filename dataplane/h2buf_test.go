package dataplane

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// Writes and reads of random sizes across chunk boundaries keep the
// bytes and their order.
func TestH2DataBuf(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var b h2DataBuf
	var want, got []byte
	next := byte(0)
	for range 2000 {
		if rng.IntN(2) == 0 {
			p := make([]byte, rng.IntN(3*h2ChunkSize))
			for i := range p {
				p[i] = next
				next++
			}
			b.Write(p)
			want = append(want, p...)
		} else {
			p := make([]byte, rng.IntN(2*h2ChunkSize)+1)
			n := b.Read(p)
			got = append(got, p[:n]...)
		}
		if b.Len() != len(want)-len(got) {
			t.Fatalf("Len %d, want %d", b.Len(), len(want)-len(got))
		}
	}
	p := make([]byte, b.Len())
	got = append(got, p[:b.Read(p)]...)
	if !bytes.Equal(got, want) {
		t.Fatal("bytes differ")
	}
	if b.Len() != 0 || len(b.chunks) != 0 {
		t.Fatalf("drained buffer holds %d bytes in %d chunks", b.Len(), len(b.chunks))
	}
	b.Write([]byte("x"))
	b.Reset()
	if b.Len() != 0 || len(b.chunks) != 0 || b.Read(make([]byte, 1)) != 0 {
		t.Fatal("Reset kept data")
	}
}

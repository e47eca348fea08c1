package dataplane

import "sync"

// h2DataBuf queues the DATA received on a stream until it is read, in
// pooled chunks: a message received faster than it is read takes no
// growing (copied, then garbage) slice, and a drained stream holds none.
type h2DataBuf struct {
	chunks []*[]byte // the first one is read from off
	off    int
	n      int        // bytes queued
	small  [2]*[]byte // chunks' array while short: no allocation
}

const h2ChunkSize = 16 << 10 // a DATA frame of the default maximum size

var h2ChunkPool = sync.Pool{New: func() any { b := make([]byte, 0, h2ChunkSize); return &b }}

// Len returns the number of bytes queued.
func (b *h2DataBuf) Len() int { return b.n }

// Write queues p.
func (b *h2DataBuf) Write(p []byte) {
	b.n += len(p)
	for len(p) > 0 {
		var last *[]byte
		if k := len(b.chunks); k > 0 {
			last = b.chunks[k-1]
		}
		if last == nil || len(*last) == cap(*last) {
			last = h2ChunkPool.Get().(*[]byte)
			if b.chunks == nil {
				b.chunks = b.small[:0]
			}
			b.chunks = append(b.chunks, last)
		}
		room := cap(*last) - len(*last)
		m := min(room, len(p))
		*last = append(*last, p[:m]...)
		p = p[m:]
	}
}

// Read moves queued bytes into p.
func (b *h2DataBuf) Read(p []byte) int {
	n := 0
	for n < len(p) && len(b.chunks) > 0 {
		c := b.chunks[0]
		m := copy(p[n:], (*c)[b.off:])
		n += m
		b.off += m
		if b.off == len(*c) {
			b.pop()
		}
	}
	b.n -= n
	return n
}

func (b *h2DataBuf) pop() {
	c := b.chunks[0]
	*c = (*c)[:0]
	h2ChunkPool.Put(c)
	b.chunks[0] = nil
	b.chunks = b.chunks[1:]
	b.off = 0
	if len(b.chunks) == 0 {
		b.chunks = b.small[:0] // release the array of a long queue
	}
}

// Reset drops what is queued.
func (b *h2DataBuf) Reset() {
	for len(b.chunks) > 0 {
		b.pop()
	}
	b.n = 0
}

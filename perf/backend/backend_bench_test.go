package backend

import (
	"bytes"
	"testing"
)

func BenchmarkCodec(b *testing.B) {
	m := &Message{Data: bytes.Repeat([]byte("x"), 64)}
	var out Message
	b.ReportAllocs()
	for b.Loop() {
		buf, err := Codec{}.Marshal(m)
		if err != nil {
			b.Fatal(err)
		}
		if err := (Codec{}).Unmarshal(buf, &out); err != nil {
			b.Fatal(err)
		}
	}
}

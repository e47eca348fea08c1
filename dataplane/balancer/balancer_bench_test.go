package balancer

import (
	"fmt"
	"testing"
	"time"
)

func BenchmarkPick(b *testing.B) {
	for _, k := range []Kind{RoundRobin, CHash, EWMA, LeastConn} {
		for _, n := range []int{3, 100} {
			ws := make([]int, n)
			for i := range ws {
				ws[i] = 1 + i%5
			}
			p := mustNew(b, k, nodes(ws...), nil)
			b.Run(fmt.Sprintf("%v/nodes=%d", k, n), func(b *testing.B) {
				b.ReportAllocs()
				var a Attempt
				for b.Loop() {
					a.Reset("user-1234", nil)
					idx, _ := p.Pick(&a)
					p.Done(idx, time.Millisecond)
				}
			})
		}
	}
}

func BenchmarkPickParallel(b *testing.B) {
	for _, k := range []Kind{RoundRobin, CHash, EWMA, LeastConn} {
		p := mustNew(b, k, nodes(1, 2, 3, 4, 5, 6, 7, 8), nil)
		b.Run(k.String(), func(b *testing.B) {
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				var a Attempt
				for pb.Next() {
					a.Reset("user-1234", nil)
					idx, _ := p.Pick(&a)
					p.Done(idx, time.Millisecond)
				}
			})
		})
	}
}

package load

import (
	"context"
	"testing"

	"github.com/meshagent/meshagent/perf/backend"
)

// BenchmarkClient measures one request of each protocol against the
// in-process backend: the harness's own cost per request.
func BenchmarkClient(b *testing.B) {
	s, err := backend.Start(backend.Config{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	for _, tc := range []struct {
		p    Protocol
		addr string
	}{{HTTP1, s.HTTPAddr}, {H2, s.HTTPAddr}, {GRPC, s.GRPCAddr}, {GRPCStream, s.GRPCAddr}, {TCP, s.TCPAddr}} {
		b.Run(tc.p.String(), func(b *testing.B) {
			f, err := NewFactory(tc.p, ClientConfig{Addr: tc.addr})
			if err != nil {
				b.Fatal(err)
			}
			c := f.NewClient()
			defer c.Close()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Do(ctx); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

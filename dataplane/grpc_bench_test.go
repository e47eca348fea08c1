package dataplane

import (
	"context"
	"testing"

	testpb "google.golang.org/grpc/interop/grpc_testing"
)

// BenchmarkGRPCForward measures unary gRPC calls through the data plane:
// a grpc-go client -> the h2c front end -> the gRPC upstream client
// (h2client.go) -> a grpc-go backend. allocs/op counts every allocation
// in the process (client and backend included).
func BenchmarkGRPCForward(b *testing.B) {
	l := listen(b)
	serveGRPC(b, l, &grpcBackend{})
	cl := grpcProxy(b, nil, l.Addr().String())
	req := &testpb.SimpleRequest{Payload: &testpb.Payload{Body: make([]byte, 64)}}
	ctx := context.Background()
	for range 10 {
		if _, err := cl.UnaryCall(ctx, req); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cl.UnaryCall(ctx, req); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

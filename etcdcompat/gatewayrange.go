package etcdcompat

import (
	"context"
	"io"
	"net/http"

	gwruntime "github.com/grpc-ecosystem/grpc-gateway/runtime"
	"github.com/grpc-ecosystem/grpc-gateway/utilities"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// patternRange is POST /v3/kv/range, the path of etcd's generated
// gateway.
var patternRange = gwruntime.MustPattern(gwruntime.NewPattern(1, []int{2, 0, 2, 1, 2, 2},
	[]string{"v3", "kv", "range"}, "", gwruntime.AssumeColonVerbOpt(true)))

// registerLocalRange serves POST /v3/kv/range by calling the KV service in
// process instead of through the in-memory gRPC connection: the reads
// APISIX makes most (readdir of whole directories) then skip a protobuf
// round trip, and replies at an unchanged revision come from the caches.
// Decoding, errors and encoding are the generated handler's: the same
// marshaler and runtime calls, the same InvalidArgument for undecodable
// bodies, the gRPC layer's ResourceExhausted for oversized requests and
// the authentication check the interceptor applies to gRPC calls. It must
// be registered before the generated KV handlers (the first match wins).
func registerLocalRange(mux *gwruntime.ServeMux, s *Server) {
	kv := &kvServer{s: s}
	maxRecv := s.opts.MaxRequestBytes + grpcOverheadBytes
	mux.Handle(http.MethodPost, patternRange, func(w http.ResponseWriter, req *http.Request, _ map[string]string) {
		ctx, cancel := context.WithCancel(req.Context())
		defer cancel()
		inbound, outbound := gwruntime.MarshalerForRequest(mux, req)
		rctx, err := gwruntime.AnnotateIncomingContext(ctx, mux, req)
		if err != nil {
			gwruntime.HTTPError(ctx, mux, outbound, w, req, err)
			return
		}
		resp, err := localRange(rctx, inbound, kv, req, maxRecv)
		if err != nil {
			gwruntime.HTTPError(ctx, mux, outbound, w, req, err)
			return
		}
		gwruntime.ForwardResponseMessage(ctx, mux, outbound, w, req, resp, mux.GetForwardResponseOptions()...)
	})
}

func localRange(ctx context.Context, m gwruntime.Marshaler, kv *kvServer, req *http.Request, maxRecv int) (*pb.RangeResponse, error) {
	var r pb.RangeRequest
	newReader, berr := utilities.IOReaderFactory(req.Body)
	if berr != nil {
		return nil, status.Errorf(codes.InvalidArgument, "%v", berr)
	}
	if err := m.NewDecoder(newReader()).Decode(&r); err != nil && err != io.EOF {
		return nil, status.Errorf(codes.InvalidArgument, "%v", err)
	}
	if n := r.Size(); n > maxRecv {
		return nil, status.Errorf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", n, maxRecv)
	}
	if err := kv.s.auth.check(ctx); err != nil {
		return nil, err
	}
	return kv.Range(ctx, &r)
}

package etcdcompat

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshagent/meshagent/etcdcompat/store"
)

// TestToGRPCError checks that every store sentinel, also when wrapped,
// becomes etcd's wire error with the same code and message.
func TestToGRPCError(t *testing.T) {
	tests := []struct {
		err      error
		code     codes.Code
		message  string
		identity error
	}{
		{store.ErrCompacted, codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted", rpctypes.ErrGRPCCompacted},
		{store.ErrFutureRev, codes.OutOfRange, "etcdserver: mvcc: required revision is a future revision", rpctypes.ErrGRPCFutureRev},
		{store.ErrEmptyKey, codes.InvalidArgument, "etcdserver: key is not provided", rpctypes.ErrGRPCEmptyKey},
		{store.ErrKeyTooLarge, codes.InvalidArgument, "etcdserver: request is too large", rpctypes.ErrGRPCRequestTooLarge},
		{store.ErrValueTooLarge, codes.InvalidArgument, "etcdserver: request is too large", rpctypes.ErrGRPCRequestTooLarge},
		{store.ErrRequestTooLarge, codes.InvalidArgument, "etcdserver: request is too large", rpctypes.ErrGRPCRequestTooLarge},
		{store.ErrTooManyOps, codes.InvalidArgument, "etcdserver: too many operations in txn request", rpctypes.ErrGRPCTooManyOps},
		{store.ErrDuplicateKey, codes.InvalidArgument, "etcdserver: duplicate key given in txn request", rpctypes.ErrGRPCDuplicateKey},
		{store.ErrLeaseNotFound, codes.NotFound, "etcdserver: requested lease not found", rpctypes.ErrGRPCLeaseNotFound},
		{store.ErrLeaseExists, codes.FailedPrecondition, "etcdserver: lease already exists", rpctypes.ErrGRPCLeaseExist},
		{store.ErrLeaseTTLTooLarge, codes.OutOfRange, "etcdserver: too large lease TTL", rpctypes.ErrGRPCLeaseTTLTooLarge},
		{store.ErrKeyNotFound, codes.InvalidArgument, "etcdserver: key not found", rpctypes.ErrGRPCKeyNotFound},
		{store.ErrValueProvided, codes.InvalidArgument, "etcdserver: value is provided", rpctypes.ErrGRPCValueProvided},
		{store.ErrLeaseProvided, codes.InvalidArgument, "etcdserver: lease is provided", rpctypes.ErrGRPCLeaseProvided},
		{store.ErrClosed, codes.Unavailable, "etcdserver: server stopped", rpctypes.ErrGRPCStopped},
		{fmt.Errorf("apply: %w", store.ErrCompacted), codes.OutOfRange, "etcdserver: mvcc: required revision has been compacted", nil},
		{&store.InvalidObjectError{Key: "/apisix/routes/1", Err: errors.New("uri: required")}, codes.InvalidArgument,
			"invalid object at /apisix/routes/1: uri: required", nil},
		{context.Canceled, codes.Canceled, "context canceled", nil},
		{context.DeadlineExceeded, codes.DeadlineExceeded, "context deadline exceeded", nil},
		{errors.New("disk on fire"), codes.Unknown, "disk on fire", nil},
	}
	for _, tt := range tests {
		t.Run(tt.err.Error(), func(t *testing.T) {
			got := toGRPCError(tt.err)
			st, ok := status.FromError(got)
			if !ok {
				t.Fatalf("not a status error: %v", got)
			}
			if st.Code() != tt.code || st.Message() != tt.message {
				t.Errorf("got %s %q, want %s %q", st.Code(), st.Message(), tt.code, tt.message)
			}
			if tt.identity != nil && got != tt.identity {
				t.Errorf("got %v, want etcd's own error value %v", got, tt.identity)
			}
		})
	}
	if toGRPCError(nil) != nil {
		t.Error("nil error must stay nil")
	}
}

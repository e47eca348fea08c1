package etcdcompat

import (
	"context"
	"errors"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshagent/meshagent/etcdcompat/store"
)

// storeErrors maps the store's sentinels to the gRPC errors etcd 3.5 sends
// for the same condition (etcd's v3rpc/util.go toGRPCErrorMap).
var storeErrors = []struct {
	err  error
	grpc error
}{
	{store.ErrCompacted, rpctypes.ErrGRPCCompacted},
	{store.ErrFutureRev, rpctypes.ErrGRPCFutureRev},
	{store.ErrEmptyKey, rpctypes.ErrGRPCEmptyKey},
	{store.ErrKeyTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{store.ErrValueTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{store.ErrTooManyOps, rpctypes.ErrGRPCTooManyOps},
	{store.ErrDuplicateKey, rpctypes.ErrGRPCDuplicateKey},
	{store.ErrLeaseNotFound, rpctypes.ErrGRPCLeaseNotFound},
	{store.ErrLeaseExists, rpctypes.ErrGRPCLeaseExist},
	{store.ErrLeaseTTLTooLarge, rpctypes.ErrGRPCLeaseTTLTooLarge},
	{store.ErrKeyNotFound, rpctypes.ErrGRPCKeyNotFound},
	{store.ErrValueProvided, rpctypes.ErrGRPCValueProvided},
	{store.ErrLeaseProvided, rpctypes.ErrGRPCLeaseProvided},
	{store.ErrRequestTooLarge, rpctypes.ErrGRPCRequestTooLarge},
	{store.ErrClosed, rpctypes.ErrGRPCStopped},
}

// toGRPCError converts an error returned by the store (possibly wrapped) to
// the status error etcd returns on the wire. It is the only place where
// store errors become wire errors; the HTTP gateway derives its status and
// body from the result.
func toGRPCError(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	for _, m := range storeErrors {
		if errors.Is(err, m.err) {
			return m.grpc
		}
	}
	var inv *store.InvalidObjectError
	if errors.As(err, &inv) {
		return status.Error(codes.InvalidArgument, inv.Error())
	}
	return status.Error(codes.Unknown, err.Error())
}

// watchCancelReason is the cancel_reason etcd puts in a watch response for
// err.
func watchCancelReason(err error) string {
	return err.Error()
}

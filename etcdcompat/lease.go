package etcdcompat

import (
	"context"
	"errors"
	"io"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/etcdcompat/store"
)

// leaseServer is etcd's Lease service over the store.
type leaseServer struct {
	pb.UnimplementedLeaseServer
	s *Server
}

// LeaseGrant grants a lease (the store applies etcd's minimum TTL).
func (l *leaseServer) LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error) {
	resp, err := l.s.st.LeaseGrant(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = l.s.hdr.fill(resp.Header)
	return resp, nil
}

// LeaseRevoke revokes a lease and deletes its keys.
func (l *leaseServer) LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error) {
	resp, err := l.s.st.LeaseRevoke(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = l.s.hdr.fill(resp.Header)
	return resp, nil
}

// LeaseTimeToLive reports a lease's remaining TTL; an unknown lease is
// answered with TTL -1 rather than an error, as etcd does.
func (l *leaseServer) LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error) {
	resp, err := l.s.st.LeaseTimeToLive(ctx, r)
	if errors.Is(err, store.ErrLeaseNotFound) {
		resp, err = &pb.LeaseTimeToLiveResponse{ID: r.ID, TTL: -1}, nil
	}
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = l.s.hdr.fill(resp.Header)
	return resp, nil
}

// LeaseLeases lists the live leases.
func (l *leaseServer) LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error) {
	resp, err := l.s.st.LeaseLeases(ctx, r)
	if err != nil {
		return nil, toGRPCError(err)
	}
	resp.Header = l.s.hdr.fill(resp.Header)
	return resp, nil
}

// LeaseKeepAlive answers every keepalive request on the stream; an unknown
// lease is answered without TTL (0), as etcd does. The header is taken
// before the renewal so its revision never exceeds the renewal's.
func (l *leaseServer) LeaseKeepAlive(stream pb.Lease_LeaseKeepAliveServer) error {
	for {
		req, err := stream.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		resp := &pb.LeaseKeepAliveResponse{ID: req.ID, Header: l.s.hdr.fill(nil)}
		ttl, err := l.s.st.LeaseRenew(stream.Context(), req.ID)
		if errors.Is(err, store.ErrLeaseNotFound) {
			ttl, err = 0, nil
		}
		if err != nil {
			return toGRPCError(err)
		}
		resp.TTL = ttl
		if err := stream.Send(resp); err != nil {
			return err
		}
	}
}

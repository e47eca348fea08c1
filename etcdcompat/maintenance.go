package etcdcompat

import (
	"context"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// maintenanceServer answers Status and Alarm; the other Maintenance RPCs
// (Defragment, Hash, HashKV, Snapshot, MoveLeader, Downgrade) have no
// meaning for an in-memory single member and answer Unimplemented.
type maintenanceServer struct {
	pb.UnimplementedMaintenanceServer
	s *Server
}

// Status reports this member as the leader of a one-member cluster.
func (m *maintenanceServer) Status(_ context.Context, _ *pb.StatusRequest) (*pb.StatusResponse, error) {
	h := m.s.hdr.fill(nil)
	return &pb.StatusResponse{
		Header:           h,
		Version:          ServerVersion,
		Leader:           m.s.opts.MemberID,
		RaftIndex:        uint64(h.Revision),
		RaftAppliedIndex: uint64(h.Revision),
		RaftTerm:         h.RaftTerm,
	}, nil
}

// Alarm reports no alarms: an in-memory store has no NOSPACE or CORRUPT
// condition. Activating or deactivating alarms is accepted and has no
// effect.
func (m *maintenanceServer) Alarm(_ context.Context, _ *pb.AlarmRequest) (*pb.AlarmResponse, error) {
	return &pb.AlarmResponse{Header: m.s.hdr.fill(nil)}, nil
}

// clusterServer answers MemberList with this member alone; membership
// changes answer Unimplemented.
type clusterServer struct {
	pb.UnimplementedClusterServer
	s *Server
}

// MemberList lists the single member with the URLs Serve listens on.
func (c *clusterServer) MemberList(_ context.Context, _ *pb.MemberListRequest) (*pb.MemberListResponse, error) {
	h := c.s.hdr.at(0)
	return &pb.MemberListResponse{Header: h, Members: []*pb.Member{{
		ID:         c.s.opts.MemberID,
		Name:       c.s.opts.Name,
		ClientURLs: c.s.clientURLs(),
	}}}, nil
}

package etcdcompat

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/meshagent/meshagent/etcdcompat/store"
)

// TestClusterMaintenance checks the one-member answers: MemberList with
// the served URL, Status, Alarm, gRPC health, and Unimplemented for what a
// single in-memory member cannot do.
func TestClusterMaintenance(t *testing.T) {
	c := startCompat(t, Options{Name: "sidecar-1", MemberID: 77, ClusterID: 88})
	s := newSide(t, "etcdcompat", c.url)
	ctx := context.Background()
	conn := s.cli.ActiveConnection()

	ml, err := pb.NewClusterClient(conn).MemberList(ctx, &pb.MemberListRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(ml.Members) != 1 || ml.Members[0].Name != "sidecar-1" || ml.Members[0].ID != 77 ||
		len(ml.Members[0].ClientURLs) != 1 || ml.Members[0].ClientURLs[0] != c.url || ml.Header.ClusterId != 88 {
		t.Fatalf("MemberList: %v", ml)
	}
	st, err := pb.NewMaintenanceClient(conn).Status(ctx, &pb.StatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != ServerVersion || st.Leader != 77 || st.Header.MemberId != 77 || st.Header.Revision != c.st.Rev() {
		t.Fatalf("Status: %v", st)
	}
	if al, err := pb.NewMaintenanceClient(conn).Alarm(ctx, &pb.AlarmRequest{}); err != nil || len(al.Alarms) != 0 {
		t.Fatalf("Alarm: %v %v", al, err)
	}
	if hc, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || hc.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health: %v %v", hc, err)
	}
	for name, call := range map[string]func() error{
		"MemberAdd": func() error { _, err := pb.NewClusterClient(conn).MemberAdd(ctx, &pb.MemberAddRequest{}); return err },
		"Defragment": func() error {
			_, err := pb.NewMaintenanceClient(conn).Defragment(ctx, &pb.DefragmentRequest{})
			return err
		},
		"UserAdd": func() error {
			_, err := pb.NewAuthClient(conn).UserAdd(ctx, &pb.AuthUserAddRequest{Name: "x"})
			return err
		},
	} {
		if err := call(); status.Code(err) != codes.Unimplemented {
			t.Errorf("%s: %v, want Unimplemented", name, err)
		}
	}
}

// TestNewRejectsBadOptions checks configuration errors are reported at New.
func TestNewRejectsBadOptions(t *testing.T) {
	if _, err := New(Options{}); err != ErrNoStore {
		t.Errorf("no store: %v", err)
	}
	st, err := store.New(store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if _, err := New(Options{Store: st, User: "root"}); err != ErrAuthConfig {
		t.Errorf("user without password: %v", err)
	}
	srv, err := New(Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal("second Close:", err)
	}
}

// TestCloseReleasesListener checks that Close stops accepting on the
// listener given to Serve (cmux alone would keep accepting) and that Serve
// returns ErrServerClosed.
func TestCloseReleasesListener(t *testing.T) {
	st, err := store.New(store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	srv, err := New(Options{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(l) }()
	addr := l.Addr().String()
	var resp *http.Response
	for i := 0; i < 50; i++ {
		if resp, err = http.Get("http://" + addr + "/version"); err == nil {
			resp.Body.Close()
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != ErrServerClosed {
		t.Fatalf("Serve: %v", err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatal("still accepting after Close")
	}
	if err := srv.Serve(l); err != ErrServerClosed {
		t.Fatalf("Serve after Close: %v", err)
	}
}

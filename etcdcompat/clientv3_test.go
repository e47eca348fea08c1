package etcdcompat

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// TestDiffClientV3 drives both servers through clientv3's own API (the
// way Go programs and etcdctl use etcd) and compares the answers.
func TestDiffClientV3(t *testing.T) {
	p := keyPrefix(t)
	ctx := func() context.Context {
		c, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		t.Cleanup(cancel)
		return c
	}
	steps := []step{
		{"put/get", func(t *testing.T, s *side) string {
			var out []string
			for i, v := range []string{"b", "a", "c"} {
				r, err := s.cli.Put(ctx(), fmt.Sprintf("%s%d", p, i), v, clientv3.WithPrevKV())
				out = append(out, s.res((*pb.PutResponse)(r), err))
			}
			g, err := s.cli.Get(ctx(), p, clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByValue, clientv3.SortDescend), clientv3.WithLimit(2))
			out = append(out, s.res((*pb.RangeResponse)(g), err))
			g, err = s.cli.Get(ctx(), p, clientv3.WithFromKey(), clientv3.WithCountOnly(), clientv3.WithRange(p+"2"))
			out = append(out, s.res((*pb.RangeResponse)(g), err))
			return strings.Join(out, "\n")
		}},
		{"txn", func(t *testing.T, s *side) string {
			r, err := s.cli.Txn(ctx()).
				If(clientv3.Compare(clientv3.Value(p+"0"), "=", "b"), clientv3.Compare(clientv3.ModRevision(p+"1"), "<", s.rev(100))).
				Then(clientv3.OpPut(p+"3", "d"), clientv3.OpGet(p, clientv3.WithPrefix(), clientv3.WithKeysOnly())).
				Else(clientv3.OpDelete(p, clientv3.WithPrefix())).Commit()
			return s.res((*pb.TxnResponse)(r), err)
		}},
		{"watch from revision with prev_kv", func(t *testing.T, s *side) string {
			wctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			wc := s.cli.Watch(wctx, p, clientv3.WithPrefix(), clientv3.WithRev(s.rev(2)), clientv3.WithPrevKV())
			if _, err := s.cli.Delete(ctx(), p+"0"); err != nil {
				return err.Error()
			}
			var evs []string
			timeout := time.After(5 * time.Second)
			for len(evs) < 4 {
				select {
				case wr := <-wc:
					if err := wr.Err(); err != nil {
						return err.Error()
					}
					for _, e := range wr.Events {
						b, _ := jsonpb.Marshal(e)
						evs = append(evs, s.normJSON(b))
					}
				case <-timeout:
					return fmt.Sprintf("timeout after %v", evs)
				}
			}
			return strings.Join(evs, "\n")
		}},
		{"lease", func(t *testing.T, s *side) string {
			g, err := s.cli.Grant(ctx(), 30)
			if err != nil {
				return err.Error()
			}
			out := []string{fmt.Sprintf("TTL=%d err=%q", g.TTL, g.Error)}
			if _, err := s.cli.Put(ctx(), p+"leased", "x", clientv3.WithLease(g.ID)); err != nil {
				return err.Error()
			}
			ka, err := s.cli.KeepAliveOnce(ctx(), g.ID)
			if err != nil {
				return err.Error()
			}
			out = append(out, fmt.Sprintf("keepalive TTL=%d same id=%v", ka.TTL, ka.ID == g.ID))
			ttl, err := s.cli.TimeToLive(ctx(), g.ID, clientv3.WithAttachedKeys())
			if err == nil {
				out = append(out, fmt.Sprintf("granted=%d keys=%d ttl>=28:%v", ttl.GrantedTTL, len(ttl.Keys), ttl.TTL >= 28))
			}
			r, err := s.cli.Revoke(ctx(), g.ID)
			out = append(out, s.res((*pb.LeaseRevokeResponse)(r), err))
			gr, err := s.cli.Get(ctx(), p+"leased")
			out = append(out, s.res((*pb.RangeResponse)(gr), err))
			return strings.Join(out, "\n")
		}},
		{"compact", func(t *testing.T, s *side) string {
			r, err := s.cli.Compact(ctx(), s.rev(3))
			out := s.res((*pb.CompactionResponse)(r), err)
			_, err = s.cli.Get(ctx(), p+"1", clientv3.WithRev(s.rev(2)))
			return out + "\n" + fmt.Sprint(err)
		}},
		{"status and members", func(t *testing.T, s *side) string {
			st, err := s.cli.Status(ctx(), s.base)
			if err != nil {
				return err.Error()
			}
			ml, err := s.cli.MemberList(ctx())
			if err != nil {
				return err.Error()
			}
			return fmt.Sprintf("version=%s leader=self:%v members=%d urls=%v", st.Version, st.Leader == st.Header.MemberId,
				len(ml.Members), ml.Members[0].ClientURLs[0] == s.base)
		}},
	}
	runDiff(t, steps)
}

package etcdcompat

import (
	"context"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// remainingTTL matches the remaining TTL of a timetolive answer, which
// may tick down by a second between the two servers.
var remainingTTL = regexp.MustCompile(`"TTL":"(\d+)"`)

func roughTTL(s string) string {
	return remainingTTL.ReplaceAllStringFunc(s, func(m string) string {
		n, _ := strconv.Atoi(remainingTTL.FindStringSubmatch(m)[1])
		if n >= 55 && n <= 60 {
			return `"TTL":"~60"`
		}
		return m
	})
}

// TestDiffLease compares the lease lifecycle over gRPC and HTTP: minimum
// TTL, explicit ids, duplicates, attached keys, timetolive, keepalive
// (stream and the one-shot HTTP form), listing, and revoke deleting the
// keys with DELETE events in one revision.
func TestDiffLease(t *testing.T) {
	const id = 4242
	p := keyPrefix(t)
	end := string(prefixEnd(p))
	steps := []step{
		{"grant below minimum", func(t *testing.T, s *side) string {
			r, err := s.lease.LeaseGrant(context.Background(), &pb.LeaseGrantRequest{TTL: 1})
			out := s.res(r, err)
			if err == nil {
				_, _ = s.lease.LeaseRevoke(context.Background(), &pb.LeaseRevokeRequest{ID: r.ID})
			}
			return out
		}},
		{"grant with id", func(t *testing.T, s *side) string {
			return s.res(s.call(&pb.LeaseGrantRequest{ID: id, TTL: 60}))
		}},
		{"grant duplicate id", func(t *testing.T, s *side) string {
			return s.res(s.call(&pb.LeaseGrantRequest{ID: id, TTL: 60}))
		}},
		{"grant over http", func(t *testing.T, s *side) string {
			out := s.post(t, "/v3/lease/grant", `{"TTL":60,"ID":0}`)
			return out
		}},
		{"put with lease", func(t *testing.T, s *side) string {
			a := s.res(s.call(&pb.PutRequest{Key: []byte(p + "k1"), Value: []byte("v"), Lease: id}))
			b := s.post(t, "/v3/kv/put", `{"key":"`+b64s(p+"k2")+`","value":"dg==","lease":"4242"}`)
			return a + "\n" + b + "\n" + s.res(s.call(&pb.RangeRequest{Key: []byte(p), RangeEnd: []byte(end)}))
		}},
		{"timetolive with keys", func(t *testing.T, s *side) string {
			a := s.res(s.call(&pb.LeaseTimeToLiveRequest{ID: id, Keys: true}))
			b := s.post(t, "/v3/kv/lease/timetolive", `{"ID":4242,"keys":true}`)
			c := s.post(t, "/v3/lease/timetolive", `{"ID":4242}`)
			return roughTTL(a + "\n" + b + "\n" + c)
		}},
		{"keepalive stream", func(t *testing.T, s *side) string {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ka, err := s.lease.LeaseKeepAlive(ctx)
			if err != nil {
				return s.res(nil, err)
			}
			var out []string
			for _, lid := range []int64{id, 999999, id} {
				if err := ka.Send(&pb.LeaseKeepAliveRequest{ID: lid}); err != nil {
					return s.res(nil, err)
				}
				r, err := ka.Recv()
				out = append(out, s.res(r, err))
			}
			return strings.Join(out, "\n")
		}},
		{"keepalive http", func(t *testing.T, s *side) string {
			return s.post(t, "/v3/lease/keepalive", `{"ID":"4242"}`)
		}},
		{"leases", func(t *testing.T, s *side) string {
			r, err := s.lease.LeaseLeases(context.Background(), &pb.LeaseLeasesRequest{})
			if err != nil {
				return s.res(nil, err)
			}
			// Other tests' leases may live on the shared etcd: look at ours.
			var ids []string
			for _, l := range r.Leases {
				if l.ID == id {
					ids = append(ids, strconv.FormatInt(l.ID, 10))
				}
			}
			sort.Strings(ids)
			httpList := s.post(t, "/v3/kv/lease/leases", `{}`)
			return strings.Join(ids, ",") + " " + strconv.FormatBool(strings.HasPrefix(httpList, "200 ") && strings.Contains(httpList, `"ID":"lease#`))
		}},
		{"revoke deletes keys", func(t *testing.T, s *side) string {
			w := s.openWatch(t)
			w.send(t, create(p, end, 0, func(c *pb.WatchCreateRequest) { c.PrevKv = true }))
			out := w.recv(t, 1)
			out = append(out, s.post(t, "/v3/kv/lease/revoke", `{"ID":"4242"}`))
			out = append(out, w.recv(t, 1)...)
			out = append(out, s.res(s.call(&pb.RangeRequest{Key: []byte(p), RangeEnd: []byte(end), CountOnly: true})))
			out = append(out, s.res(s.call(&pb.LeaseTimeToLiveRequest{ID: id})))
			out = append(out, s.res(s.call(&pb.LeaseRevokeRequest{ID: id})))
			out = append(out, s.post(t, "/v3/lease/revoke", `{"ID":"4242"}`))
			return strings.Join(out, "\n")
		}},
	}
	runDiff(t, steps)
}

func b64s(s string) string {
	b, _ := jsonpb.Marshal(&pb.PutRequest{Key: []byte(s)})
	// {"key":"..."}
	return strings.TrimSuffix(strings.TrimPrefix(string(b), `{"key":"`), `"}`)
}

package store

import (
	"context"
	"fmt"
	"maps"
	"testing"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

type modelKV struct {
	value                string
	create, mod, version int64
}

// model is the obvious implementation the store is checked against.
type model struct {
	rev  int64
	kvs  map[string]modelKV
	past map[int64]map[string]modelKV // state at each revision
}

func (m *model) put(k, v string) {
	m.rev++
	kv, ok := m.kvs[k]
	if !ok {
		kv = modelKV{create: m.rev}
	}
	kv.value, kv.mod = v, m.rev
	kv.version++
	m.kvs[k] = kv
	m.past[m.rev] = maps.Clone(m.kvs)
}

func (m *model) del(from, to string) int64 {
	var n int64
	for k := range m.kvs {
		if k >= from && k < to {
			n++
		}
	}
	if n == 0 {
		return 0
	}
	m.rev++
	for k := range m.kvs {
		if k >= from && k < to {
			delete(m.kvs, k)
		}
	}
	m.past[m.rev] = maps.Clone(m.kvs)
	return n
}

func (m *model) check(t *testing.T, s *memStore, rev int64, step int) {
	t.Helper()
	r, err := s.Range(context.Background(), &pb.RangeRequest{Key: []byte{0}, RangeEnd: []byte{0}, Revision: rev})
	if err != nil {
		t.Fatalf("step %d: range at %d: %v", step, rev, err)
	}
	want := m.kvs
	if rev != 0 {
		want = m.past[rev]
	}
	if len(r.Kvs) != len(want) || r.Count != int64(len(want)) {
		t.Fatalf("step %d: %d keys at %d, model has %d", step, len(r.Kvs), rev, len(want))
	}
	prev := ""
	for _, kv := range r.Kvs {
		k := string(kv.Key)
		w, ok := want[k]
		if !ok || k <= prev || string(kv.Value) != w.value || kv.CreateRevision != w.create || kv.ModRevision != w.mod || kv.Version != w.version {
			t.Fatalf("step %d: at %d key %q = %+v, model %+v (present %v)", step, rev, k, kv, w, ok)
		}
		prev = k
	}
}

// FuzzOps applies a random sequence of puts, deletes, txns and
// compactions and checks, after every step, that the revision only moves
// forward as the model says, that Range (current and historical) equals
// the model, and at the end that replaying the watch stream rebuilds the
// final state.
func FuzzOps(f *testing.F) {
	f.Add([]byte{0, 1, 2, 0, 3, 4, 1, 0, 9, 2, 5, 1, 3, 7, 0, 0, 4, 2})
	f.Add([]byte("put put delete txn compact range put"))
	f.Fuzz(func(t *testing.T, ops []byte) {
		if len(ops) > 300 {
			ops = ops[:300]
		}
		ctx := context.Background()
		s, _ := newTest(t, Options{HistoryLimit: 1000})
		w, err := s.Watch(ctx, WatchOptions{Key: []byte{0}, RangeEnd: []byte{0}, StartRevision: 1})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Cancel()
		m := &model{rev: 1, kvs: map[string]modelKV{}, past: map[int64]map[string]modelKV{1: {}}}
		keys := []string{"a", "b", "c", "d", "e"}
		next := func(i *int) byte {
			if *i >= len(ops) {
				return 0
			}
			b := ops[*i]
			*i++
			return b
		}
		for i, step := 0, 0; i < len(ops); step++ {
			op := next(&i)
			k := keys[int(next(&i))%len(keys)]
			v := fmt.Sprint(next(&i) % 4)
			before := s.Rev()
			switch op % 5 {
			case 0:
				r, err := s.Put(ctx, &pb.PutRequest{Key: []byte(k), Value: []byte(v)})
				if err != nil {
					t.Fatal(err)
				}
				m.put(k, v)
				if r.Header.Revision != m.rev {
					t.Fatalf("put revision %d, model %d", r.Header.Revision, m.rev)
				}
			case 1:
				end := keys[int(next(&i))%len(keys)]
				r, err := s.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte(k), RangeEnd: []byte(end)})
				if err != nil {
					t.Fatal(err)
				}
				if n := m.del(k, end); r.Deleted != n {
					t.Fatalf("deleted %d, model %d", r.Deleted, n)
				}
			case 2:
				// if version(k) == v then put(k2, v) else delete(k2)
				k2 := keys[(int(op)/5)%len(keys)]
				ver := int64(v[0] - '0')
				r, err := s.Txn(ctx, &pb.TxnRequest{
					Compare: []*pb.Compare{cmpVersion(k, pb.Compare_EQUAL, ver)},
					Success: []*pb.RequestOp{opPut(k2, v), opGet(k2)},
					Failure: []*pb.RequestOp{opDel(k2, "")},
				})
				if err != nil {
					t.Fatal(err)
				}
				if r.Succeeded != (m.kvs[k].version == ver) {
					t.Fatalf("txn compare: got %v, model version %d vs %d", r.Succeeded, m.kvs[k].version, ver)
				}
				if r.Succeeded {
					m.put(k2, v)
				} else {
					m.del(k2, k2+"\x00")
				}
				if r.Header.Revision != m.rev {
					t.Fatalf("txn revision %d, model %d", r.Header.Revision, m.rev)
				}
			case 3:
				c := m.rev - int64(op%7)
				prevC := s.CompactRev()
				_, err := s.Compact(ctx, &pb.CompactionRequest{Revision: c})
				if wantErr := c <= prevC || c > m.rev; wantErr != (err != nil) {
					t.Fatalf("compact %d at compact rev %d: %v", c, prevC, err)
				}
			case 4:
				rev := m.rev - int64(op%9)
				if rev >= s.CompactRev() && rev > 0 {
					m.check(t, s, rev, step)
				}
			}
			if s.Rev() < before || s.Rev() != m.rev {
				t.Fatalf("step %d: revision %d -> %d, model %d", step, before, s.Rev(), m.rev)
			}
			m.check(t, s, 0, step)
		}
		// Replaying the watch rebuilds the final state.
		state := map[string]string{}
		for seen := int64(1); seen < m.rev; {
			r := recv(t, w)
			for _, ev := range r.Events {
				if ev.Kv.ModRevision < seen {
					t.Fatalf("watch went backwards: %d after %d", ev.Kv.ModRevision, seen)
				}
				seen = ev.Kv.ModRevision
				if ev.Type == mvccpb.PUT {
					state[string(ev.Kv.Key)] = string(ev.Kv.Value)
				} else {
					delete(state, string(ev.Kv.Key))
				}
			}
		}
		if len(state) != len(m.kvs) {
			t.Fatalf("watch replay has %d keys, model %d", len(state), len(m.kvs))
		}
		for k, v := range state {
			if m.kvs[k].value != v {
				t.Fatalf("watch replay %s=%s, model %+v", k, v, m.kvs[k])
			}
		}
	})
}

package xds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/xds/translate"
)

// BulkTxner is an optional store capability: one transaction of any size
// (no etcd limits on op count or request bytes), applied at one revision.
// When the store has it, every push is one revision whatever its size.
type BulkTxner interface {
	BulkTxn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
}

// Store transaction limits (etcd's defaults, which the store enforces).
const (
	maxTxnOps   = 128
	maxTxnBytes = 1 << 20 // under etcd's 1.5 MiB, leaving room for framing
)

// ApplierOptions configure NewApplier.
type ApplierOptions struct {
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Applier is the Handler that translates pushes and writes them into a
// store. A push is written as one transaction when it fits etcd's limits
// (128 ops, ~1 MiB), or when the store implements BulkTxner; otherwise in
// dependency order (secrets, upstreams, stream routes, routes, listeners;
// deletions in reverse) over consecutive revisions, and a chunk rejected
// by the store's Decoder reverts the chunks written before it. Validation
// is the store's Decoder: a rejected object NACKs the push.
type Applier struct {
	st  store.Store
	o   ApplierOptions
	log *slog.Logger

	mu sync.Mutex // serialises Apply; guards t and seed
	t  *translate.Translator
	// seed holds, until the first complete config, the xxhash of objects
	// an earlier run left in the store (label meshagent.xds.name): equal
	// objects are not rewritten, the others are deleted by Synced.
	seed   map[string]uint64
	seeded bool

	pushes    atomic.Int64
	writes    atomic.Int64
	lastApply atomic.Int64 // duration of the last Apply, ns
}

// NewApplier returns an Applier writing into st.
func NewApplier(st store.Store, o ApplierOptions) *Applier {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Applier{st: st, o: o, log: log, t: translate.New(log)}
}

var _ Handler = (*Applier)(nil)

// Wanted implements Handler.
func (a *Applier) Wanted(k translate.Kind) []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.t.Wanted(k)
}

// Warnings is the number of ignored fields seen so far.
func (a *Applier) Warnings() int64 { return a.t.WarningCount() }

// Pushes is the number of pushes applied.
func (a *Applier) Pushes() int64 { return a.pushes.Load() }

// Writes is the number of objects put or deleted in the store.
func (a *Applier) Writes() int64 { return a.writes.Load() }

// Apply implements Handler: translate, validate, write, then commit the
// translation state; on any error the previous state stays.
func (a *Applier) Apply(ctx context.Context, k translate.Kind, upserts []translate.Resource, removals []string) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	start := time.Now()
	if !a.seeded {
		if err := a.loadSeed(ctx); err != nil {
			return err
		}
	}
	plan, err := a.t.Stage(k, upserts, removals)
	if err != nil {
		return err
	}
	if err := a.write(ctx, plan); err != nil {
		plan.Rollback()
		return err
	}
	plan.Commit()
	for _, o := range plan.Puts {
		delete(a.seed, o.Key)
	}
	a.pushes.Add(1)
	a.writes.Add(int64(len(plan.Puts) + len(plan.Deletes)))
	a.lastApply.Store(int64(time.Since(start)))
	return nil
}

// seedPrefixes are where translated objects live.
var seedPrefixes = []string{"/apisix/", "/meshagent/"}

// loadSeed records the translated objects already in the store.
func (a *Applier) loadSeed(ctx context.Context) error {
	a.seed = map[string]uint64{}
	for _, p := range seedPrefixes {
		end := []byte(p)
		end[len(end)-1]++
		resp, err := a.st.Range(ctx, &pb.RangeRequest{Key: []byte(p), RangeEnd: end})
		if err != nil {
			return fmt.Errorf("xds: read the store: %w", err)
		}
		for _, kv := range resp.Kvs {
			if bytes.Contains(kv.Value, []byte(`"`+apisix.LabelXDSName+`"`)) {
				a.seed[string(kv.Key)] = xxhash.Sum64(kv.Value)
			}
		}
	}
	a.seeded = true
	return nil
}

// Synced implements Syncer: objects an earlier run left in the store that
// the first complete config did not produce again are deleted.
func (a *Applier) Synced(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if len(a.seed) == 0 {
		return nil
	}
	var ops []*pb.RequestOp
	for k := range a.seed {
		ops = append(ops, deleteOp([]byte(k)))
	}
	sort.Slice(ops, func(i, j int) bool { return keyRank(string(opKey(ops[i]))) > keyRank(string(opKey(ops[j]))) })
	for _, c := range chunkOps(ops) {
		if _, err := a.st.Txn(ctx, &pb.TxnRequest{Success: c}); err != nil {
			return fmt.Errorf("xds: delete stale objects: %w", err)
		}
	}
	a.log.Info("xds: removed objects of an earlier run", "count", len(ops))
	a.seed = nil
	return nil
}

var _ Syncer = (*Applier)(nil)

// keyRank orders writes so that what is referred to exists first.
func keyRank(key string) int {
	switch {
	case strings.HasPrefix(key, translate.PrefixSSLs), strings.HasPrefix(key, translate.PrefixSecrets):
		return 0
	case strings.HasPrefix(key, translate.PrefixUpstreams):
		return 1
	case strings.HasPrefix(key, translate.PrefixStreamRoutes):
		return 2
	case strings.HasPrefix(key, translate.PrefixRoutes):
		return 3
	}
	return 4
}

// write puts and deletes what plan changes (skipping objects an earlier run
// left with the same bytes): in one transaction when the store takes it,
// else in chunks reverted on failure.
func (a *Applier) write(ctx context.Context, plan *translate.Plan) error {
	if plan.Empty() {
		return nil
	}
	puts := make([]translate.Object, 0, len(plan.Puts))
	for _, o := range plan.Puts {
		if h, ok := a.seed[o.Key]; ok && h == xxhash.Sum64(o.Value) {
			continue // left by an earlier run with the same bytes
		}
		puts = append(puts, o)
	}
	if len(puts) == 0 && len(plan.Deletes) == 0 {
		return nil
	}
	sort.SliceStable(puts, func(i, j int) bool { return keyRank(puts[i].Key) < keyRank(puts[j].Key) })
	dels := append([]string(nil), plan.Deletes...)
	sort.SliceStable(dels, func(i, j int) bool { return keyRank(dels[i]) > keyRank(dels[j]) })
	ops := make([]*pb.RequestOp, 0, len(puts)+len(dels))
	size := 0
	for _, o := range puts {
		ops = append(ops, putOp([]byte(o.Key), o.Value))
		size += len(o.Key) + len(o.Value) + 16
	}
	for _, k := range dels {
		ops = append(ops, deleteOp([]byte(k)))
		size += len(k) + 16
	}
	if bt, ok := a.st.(BulkTxner); ok {
		_, err := bt.BulkTxn(ctx, &pb.TxnRequest{Success: ops})
		return storeErr(plan, err)
	}
	if len(ops) <= maxTxnOps && size <= maxTxnBytes {
		_, err := a.st.Txn(ctx, &pb.TxnRequest{Success: ops})
		return storeErr(plan, err)
	}
	// Too big for one etcd transaction: consecutive chunks. If the store
	// rejects a chunk, the chunks already written are reverted to the
	// values read before, so a rejected push leaves the old config.
	a.log.Debug("xds: push split over several revisions", "ops", len(ops), "bytes", size)
	old, err := a.snapshotKeys(ctx, ops)
	if err != nil {
		return storeErr(plan, err)
	}
	chunks := chunkOps(ops)
	for i, c := range chunks {
		if _, err := a.st.Txn(ctx, &pb.TxnRequest{Success: c}); err != nil {
			if i > 0 {
				if rerr := a.revert(ctx, ops[:chunkEnd(chunks, i)], old); rerr != nil {
					a.log.Error("xds: revert of a partly written push failed; the store mixes old and new objects until the next push", "err", rerr)
				}
			}
			return storeErr(plan, err)
		}
	}
	return nil
}

// chunkOps splits ops into transactions within etcd's op and size limits.
func chunkOps(ops []*pb.RequestOp) [][]*pb.RequestOp {
	var out [][]*pb.RequestOp
	for start := 0; start < len(ops); {
		end, sz := start, 0
		for end < len(ops) && end-start < maxTxnOps {
			n := ops[end].Size()
			if end > start && sz+n > maxTxnBytes {
				break
			}
			sz += n
			end++
		}
		out = append(out, ops[start:end])
		start = end
	}
	return out
}

// chunkEnd is the number of ops in chunks[:i].
func chunkEnd(chunks [][]*pb.RequestOp, i int) int {
	n := 0
	for _, c := range chunks[:i] {
		n += len(c)
	}
	return n
}

// putOp is a transaction op putting value at key.
func putOp(key, value []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: key, Value: value}}}
}

// deleteOp is a transaction op deleting key.
func deleteOp(key []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{RequestDeleteRange: &pb.DeleteRangeRequest{Key: key}}}
}

// opKey is the key a put or delete op touches.
func opKey(op *pb.RequestOp) []byte {
	if p := op.GetRequestPut(); p != nil {
		return p.Key
	}
	return op.GetRequestDeleteRange().GetKey()
}

// snapshotKeys reads the current value of every key ops touch (nil: absent).
func (a *Applier) snapshotKeys(ctx context.Context, ops []*pb.RequestOp) (map[string][]byte, error) {
	old := make(map[string][]byte, len(ops))
	for _, op := range ops {
		k := opKey(op)
		resp, err := a.st.Range(ctx, &pb.RangeRequest{Key: k})
		if err != nil {
			return nil, err
		}
		if len(resp.Kvs) == 1 {
			old[string(k)] = resp.Kvs[0].Value
		} else {
			old[string(k)] = nil
		}
	}
	return old, nil
}

// revert restores the keys of ops to their values in old.
func (a *Applier) revert(ctx context.Context, ops []*pb.RequestOp, old map[string][]byte) error {
	rev := make([]*pb.RequestOp, 0, len(ops))
	for _, op := range ops {
		k := opKey(op)
		if v := old[string(k)]; v != nil {
			rev = append(rev, putOp(k, v))
		} else {
			rev = append(rev, deleteOp(k))
		}
	}
	for _, c := range chunkOps(rev) {
		if _, err := a.st.Txn(ctx, &pb.TxnRequest{Success: c}); err != nil {
			return err
		}
	}
	return nil
}

// storeErr names the xDS resource behind a rejected object.
func storeErr(plan *translate.Plan, err error) error {
	if err == nil {
		return nil
	}
	var inv *store.InvalidObjectError
	if errors.As(err, &inv) {
		for _, o := range plan.Puts {
			if o.Key == inv.Key {
				return fmt.Errorf("xds: %s translates to an object the store rejects: %w", o.Source, err)
			}
		}
		return fmt.Errorf("xds: store rejected %s: %w", inv.Key, err)
	}
	return fmt.Errorf("xds: store write: %w", err)
}

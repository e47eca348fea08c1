package apisix

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"github.com/meshagent/meshagent/etcdcompat/store"
)

// maxOpsPerTxn is etcd's default --max-txn-ops, which the store enforces.
const maxOpsPerTxn = 128

// SyncStandalone makes the objects under prefix in st equal s: new and
// changed objects are put, objects of the standalone kinds that s no
// longer has are deleted, and missing directory placeholders (InitDirs)
// are created. An object whose stored bytes already equal the file's is
// not written, so its revision does not move. Listeners, secrets,
// <prefix>/plugins and other keys are left alone. All changes go in one
// transaction when they fit in etcd's 128 operations; larger changes are
// applied in batches, puts before deletes.
func SyncStandalone(ctx context.Context, st store.Store, s *Standalone, prefix string) error {
	want := make(map[string][]byte, len(s.items)+len(initDirs))
	for _, it := range s.items {
		want[Key(prefix, it.Kind, it.ID)] = it.JSON
	}
	resp, err := st.Range(ctx, &pb.RangeRequest{Key: []byte(prefix + "/"), RangeEnd: []byte(prefix + "0")})
	if err != nil {
		return fmt.Errorf("apisix: standalone sync: read %s: %w", prefix, err)
	}
	have := make(map[string][]byte, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		have[string(kv.Key)] = kv.Value
	}
	var puts, dels []*pb.RequestOp
	for _, dir := range InitDirs(prefix) {
		if _, ok := have[dir]; !ok {
			puts = append(puts, putOp(dir, []byte(InitDirValue)))
		}
	}
	keys := make([]string, 0, len(want))
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if old, ok := have[k]; !ok || !bytes.Equal(old, want[k]) {
			puts = append(puts, putOp(k, want[k]))
		}
	}
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		kind, _, ok := ParseKey(prefix, k)
		if !ok || kind == KindListener {
			continue
		}
		if _, keep := want[k]; !keep {
			dels = append(dels, &pb.RequestOp{Request: &pb.RequestOp_RequestDeleteRange{
				RequestDeleteRange: &pb.DeleteRangeRequest{Key: kv.Key}}})
		}
	}
	ops := append(puts, dels...)
	for len(ops) > 0 {
		n := min(len(ops), maxOpsPerTxn)
		if _, err := st.Txn(ctx, &pb.TxnRequest{Success: ops[:n]}); err != nil {
			return fmt.Errorf("apisix: standalone sync: write: %w", err)
		}
		ops = ops[n:]
	}
	return nil
}

func putOp(key string, val []byte) *pb.RequestOp {
	return &pb.RequestOp{Request: &pb.RequestOp_RequestPut{RequestPut: &pb.PutRequest{Key: []byte(key), Value: val}}}
}

// SyncStandaloneFile reads the standalone file at path, checks its #END
// marker, substitutes environment variables (ExpandEnv with
// os.LookupEnv), validates it and syncs it into st under DefaultPrefix.
// On error nothing is written.
func SyncStandaloneFile(ctx context.Context, path string, st store.Store) (*Standalone, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("apisix: standalone: %w", err)
	}
	if !endFlagRe.Match(tail10(data)) {
		return nil, fmt.Errorf("%s: %w", path, ErrNoEndMarker)
	}
	if data, err = ExpandEnv(data, os.LookupEnv); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s, err := LoadStandalone(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := SyncStandalone(ctx, st, s, DefaultPrefix); err != nil {
		return nil, err
	}
	return s, nil
}

// PollInterval is how often WatchStandaloneFile checks the file.
const PollInterval = 500 * time.Millisecond

// WatchStandaloneFile keeps st (under DefaultPrefix) equal to the
// standalone file at path until ctx ends. It syncs once at start: if that
// fails it returns the error at once (the caller decides whether a bad
// file at startup is fatal). Then it checks the file's modification time
// and size every PollInterval and re-syncs when they change. A file that
// no longer reads or validates is logged with the item and field named,
// and the last good configuration stays in force. It returns nil when ctx
// ends. logger may be nil.
func WatchStandaloneFile(ctx context.Context, path string, st store.Store, logger *slog.Logger) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	since := StatStandaloneFile(path)
	if _, err := SyncStandaloneFile(ctx, path, st); err != nil {
		return err
	}
	logger.Info("standalone config loaded", "path", path)
	return FollowStandaloneFile(ctx, path, st, logger, since)
}

// StandaloneStamp is what WatchStandaloneFile compares to notice that a
// standalone file changed: its modification time and size. The zero value
// means the file could not be read.
type StandaloneStamp struct {
	ModTime time.Time
	Size    int64
}

// StatStandaloneFile returns the stamp of the file at path, or the zero
// stamp if it cannot be read.
func StatStandaloneFile(path string) StandaloneStamp {
	fi, err := os.Stat(path)
	if err != nil {
		return StandaloneStamp{}
	}
	return StandaloneStamp{ModTime: fi.ModTime(), Size: fi.Size()}
}

// FollowStandaloneFile is WatchStandaloneFile without its initial sync,
// for a caller that synced the file itself (SyncStandaloneFile) and must
// not pay for parsing it twice: since is the stamp taken before that
// sync, so a change made in between is synced at the first poll. It
// re-syncs whenever the stamp changes, logs a rejected file and keeps the
// last good configuration, and returns nil when ctx ends. logger may be
// nil.
func FollowStandaloneFile(ctx context.Context, path string, st store.Store, logger *slog.Logger, since StandaloneStamp) error {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	t := time.NewTicker(PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		now := StatStandaloneFile(path)
		if now.ModTime.IsZero() || now.ModTime.Equal(since.ModTime) && now.Size == since.Size {
			continue
		}
		since = now
		if _, err := SyncStandaloneFile(ctx, path, st); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			logger.Error("standalone config rejected; keeping the last good config", "path", path, "err", err)
			continue
		}
		logger.Info("standalone config reloaded", "path", path)
	}
}

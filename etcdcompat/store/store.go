// Package store is meshagent's single source of truth: an in-memory,
// revisioned key-value store with etcd v3 semantics (revisions, versions,
// leases, watch history, compaction, transactions).
//
// Every configuration source (xDS translation, apisix.yaml, writes through
// the etcd emulation) writes APISIX-format JSON objects into one Store; the
// etcd emulation serves it to etcd clients and the data plane reads it
// in-process through WatchObjects.
//
// Requests and responses reuse etcd's own protobuf types
// (go.etcd.io/etcd/api/v3/etcdserverpb, mvccpb) so that the etcd emulation
// is a thin adapter and semantics are etcd's by construction. The store
// fills Header.Revision only; the RPC edge fills cluster and member ids.
//
// It does not own: the wire protocol (package etcdcompat), the APISIX schema
// (package apisix, plugged in as a Decoder), nor how the data plane compiles
// objects.
package store

import (
	"context"
	"errors"
	"log/slog"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// Sentinel errors. The RPC edge maps each to etcd's own error (rpctypes)
// exactly once; the messages equal etcd's server-side messages.
var (
	ErrCompacted        = errors.New("mvcc: required revision has been compacted")
	ErrFutureRev        = errors.New("mvcc: required revision is a future revision")
	ErrEmptyKey         = errors.New("etcdserver: key is not provided")
	ErrKeyTooLarge      = errors.New("etcdserver: request is too large")
	ErrValueTooLarge    = errors.New("etcdserver: request is too large")
	ErrTooManyOps       = errors.New("etcdserver: too many operations in txn request")
	ErrDuplicateKey     = errors.New("etcdserver: duplicate key given in txn request")
	ErrLeaseNotFound    = errors.New("etcdserver: requested lease not found")
	ErrLeaseExists      = errors.New("etcdserver: lease already exists")
	ErrLeaseTTLTooLarge = errors.New("etcdserver: too large lease TTL")
	ErrKeyNotFound      = errors.New("etcdserver: key not found")
	// ErrValueProvided: a put with ignore_value also carries a value.
	ErrValueProvided = errors.New("etcdserver: value is provided")
	// ErrLeaseProvided: a put with ignore_lease also carries a lease.
	ErrLeaseProvided = errors.New("etcdserver: lease is provided")
	// ErrRequestTooLarge: a txn or delete request exceeds etcd's default
	// max-request-bytes (1.5 MiB); puts report ErrKeyTooLarge or
	// ErrValueTooLarge, which carry the same message.
	ErrRequestTooLarge = errors.New("etcdserver: request is too large")
	ErrClosed          = errors.New("store: closed")
)

// InvalidObjectError is returned when a Decoder rejects a value. Nothing is
// written when a request carries an invalid object (a whole txn is refused).
// The RPC edge maps it to InvalidArgument with Error() as the message.
type InvalidObjectError struct {
	Key string
	Err error
}

func (e *InvalidObjectError) Error() string {
	return "invalid object at " + e.Key + ": " + e.Err.Error()
}
func (e *InvalidObjectError) Unwrap() error { return e.Err }

// Decoder validates and decodes the value written at key. It returns
// (nil, nil) for keys it does not govern (they are stored unvalidated),
// a decoded immutable value for keys it governs, or an error naming the
// field and rule that failed. It is called once per write, outside any
// read path, and must be safe for concurrent use.
type Decoder func(key, value []byte) (any, error)

// Options configure New.
type Options struct {
	// Decoder validates and decodes writes; nil stores everything as is.
	Decoder Decoder
	// DataFile, if set, persists data and revision so a restart keeps them.
	DataFile string
	// HistoryLimit is the number of revisions of watch history kept before
	// automatic compaction (0: a default of 10000).
	HistoryLimit int
	// Logger receives structured logs; nil discards them.
	Logger *slog.Logger
}

// Store is the revisioned KV. All methods are safe for concurrent use.
// Returned messages are owned by the caller; the store never mutates them
// after returning. The byte slices they point to (keys, values) may be
// shared with the store and must not be modified in place. Request
// messages are not retained.
type Store interface {
	// Rev is the current revision. The first revision of a new store is
	// the wall clock in Unix milliseconds, so revisions never go backwards
	// across restarts, even without a data file.
	Rev() int64
	// CompactRev is the revision up to which history was compacted.
	CompactRev() int64

	Range(ctx context.Context, r *pb.RangeRequest) (*pb.RangeResponse, error)
	Put(ctx context.Context, r *pb.PutRequest) (*pb.PutResponse, error)
	DeleteRange(ctx context.Context, r *pb.DeleteRangeRequest) (*pb.DeleteRangeResponse, error)
	Txn(ctx context.Context, r *pb.TxnRequest) (*pb.TxnResponse, error)
	Compact(ctx context.Context, r *pb.CompactionRequest) (*pb.CompactionResponse, error)

	LeaseGrant(ctx context.Context, r *pb.LeaseGrantRequest) (*pb.LeaseGrantResponse, error)
	LeaseRevoke(ctx context.Context, r *pb.LeaseRevokeRequest) (*pb.LeaseRevokeResponse, error)
	// LeaseRenew refreshes a lease and returns its granted TTL.
	LeaseRenew(ctx context.Context, id int64) (ttl int64, err error)
	LeaseTimeToLive(ctx context.Context, r *pb.LeaseTimeToLiveRequest) (*pb.LeaseTimeToLiveResponse, error)
	LeaseLeases(ctx context.Context, r *pb.LeaseLeasesRequest) (*pb.LeaseLeasesResponse, error)

	// Watch starts a watch. A StartRevision older than CompactRev yields
	// ErrCompacted (the edge answers created+canceled with compact_revision
	// as etcd does); a StartRevision of 0 means "from now". Events of one
	// revision always arrive in one WatchResponse. A slow consumer never
	// blocks writers: it falls behind and is caught up from history, or is
	// canceled with CompactRevision set if history was compacted meanwhile.
	Watch(ctx context.Context, o WatchOptions) (Watcher, error)

	// Objects returns the decoded objects under prefix at the current
	// revision, sorted by key, and that revision. Every live key is listed;
	// Value is nil for keys the Decoder does not govern.
	Objects(prefix string) ([]Object, int64)
	// WatchObjects calls fn, from one goroutine and in revision order, with
	// the decoded changes under prefix after revision rev, until ctx ends.
	// Each change is decoded once, when written, whatever the number of
	// watchers. fn must not block for long; the store buffers behind it.
	// With rev <= 0, or if fn falls so far behind that history was dropped,
	// fn first receives the difference between what it was told and the
	// current state (puts for every new or changed object, deletes for the
	// rest), so its view always converges.
	WatchObjects(ctx context.Context, prefix string, rev int64, fn func([]ObjectEvent))

	// Close stops lease expiry, flushes the data file and ends watches.
	Close() error
}

// WatchOptions is an in-process watch request (etcd's WatchCreateRequest).
type WatchOptions struct {
	Key, RangeEnd   []byte
	StartRevision   int64
	PrevKV          bool
	NoPut, NoDelete bool
}

// Watcher delivers WatchResponses on C until Cancel or the store closes;
// C is closed then. Canceled responses carry the reason: a watcher that
// fell behind compacted history gets CompactRevision set and, as from
// etcd, no CancelReason.
type Watcher interface {
	C() <-chan WatchResponse
	Cancel()
}

// WatchResponse is one batch of events: all events of one or more whole
// revisions, in order. Revision is the store revision when it was sent.
// The KeyValues the events point to are shared between watchers and with
// the store: they must be treated as read-only.
type WatchResponse struct {
	Revision        int64
	Events          []*mvccpb.Event
	CompactRevision int64
	Canceled        bool
	CancelReason    string
}

// Object is a decoded value at a key.
type Object struct {
	Key         string
	Value       any
	ModRevision int64
}

// ObjectEvent is a decoded change. On delete, Value is nil.
type ObjectEvent struct {
	Key      string
	Value    any
	Deleted  bool
	Revision int64
}

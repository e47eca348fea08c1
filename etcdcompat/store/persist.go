package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
)

// ErrCorruptDataFile is wrapped by New when Options.DataFile cannot be
// parsed or fails validation; the message names the file.
var ErrCorruptDataFile = errors.New("store: corrupt data file")

// dataFileFormat is the version of the data file layout.
const dataFileFormat = 1

// flushInterval is the minimum time between two writes of the data file
// (longer when writing takes long).
const flushInterval = 100 * time.Millisecond

// fileData is the data file: the live keys (not their history), the
// revisions and the leases, as JSON (byte slices in base64).
type fileData struct {
	Format          int         `json:"format"`
	Revision        int64       `json:"revision"`
	CompactRevision int64       `json:"compact_revision"`
	KVs             []fileKV    `json:"kvs"`
	Leases          []fileLease `json:"leases"`
}

type fileKV struct {
	Key            []byte `json:"key"`
	Value          []byte `json:"value"`
	CreateRevision int64  `json:"create_revision"`
	ModRevision    int64  `json:"mod_revision"`
	Version        int64  `json:"version"`
	Lease          int64  `json:"lease,omitempty"`
}

type fileLease struct {
	ID  int64 `json:"id"`
	TTL int64 `json:"ttl"`
}

// parseDataFile decodes and validates a data file's bytes.
func parseDataFile(b []byte) (*fileData, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d fileData
	if err := dec.Decode(&d); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("trailing data after the JSON document")
	}
	if d.Format != dataFileFormat {
		return nil, fmt.Errorf("format: must be %d, got %d", dataFileFormat, d.Format)
	}
	if d.Revision <= 0 {
		return nil, fmt.Errorf("revision: must be > 0, got %d", d.Revision)
	}
	if d.CompactRevision < -1 || d.CompactRevision > d.Revision {
		return nil, fmt.Errorf("compact_revision: must be in [-1, revision], got %d", d.CompactRevision)
	}
	leases := make(map[int64]bool, len(d.Leases))
	for i, l := range d.Leases {
		if l.ID <= 0 || l.TTL < 1 || l.TTL > maxLeaseTTL || leases[l.ID] {
			return nil, fmt.Errorf("leases[%d]: id must be a unique positive id and ttl in [1, %d]", i, maxLeaseTTL)
		}
		leases[l.ID] = true
	}
	for i, kv := range d.KVs {
		switch {
		case len(kv.Key) == 0:
			return nil, fmt.Errorf("kvs[%d].key: must not be empty", i)
		case i > 0 && string(d.KVs[i-1].Key) >= string(kv.Key):
			return nil, fmt.Errorf("kvs[%d].key: keys must be sorted and unique", i)
		case kv.CreateRevision <= 0 || kv.CreateRevision > kv.ModRevision || kv.ModRevision > d.Revision:
			return nil, fmt.Errorf("kvs[%d]: need 0 < create_revision <= mod_revision <= revision", i)
		case kv.Version < 1:
			return nil, fmt.Errorf("kvs[%d].version: must be >= 1", i)
		case kv.Lease != 0 && !leases[kv.Lease]:
			return nil, fmt.Errorf("kvs[%d].lease: lease %d is not in leases", i, kv.Lease)
		}
	}
	return &d, nil
}

// load reads path into the empty store. A missing file is not an error.
func (s *memStore) load(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("store: read data file %s: %w", path, err)
	}
	d, err := parseDataFile(b)
	if err != nil {
		return false, fmt.Errorf("%w %s: %v", ErrCorruptDataFile, path, err)
	}
	now := s.now()
	for _, l := range d.Leases {
		s.leases[l.ID] = &lease{id: l.ID, ttl: l.TTL, expiry: now.Add(time.Duration(l.TTL) * time.Second), keys: make(map[string]struct{})}
	}
	for _, kv := range d.KVs {
		v := &version{kv: mvccpb.KeyValue{
			Key: kv.Key, Value: kv.Value, CreateRevision: kv.CreateRevision,
			ModRevision: kv.ModRevision, Version: kv.Version, Lease: kv.Lease,
		}}
		if v.kv.Value == nil {
			v.kv.Value = []byte{}
		}
		if s.opts.Decoder != nil {
			obj, err := s.opts.Decoder(kv.Key, v.kv.Value)
			if err != nil {
				// Kept as bytes: a stricter Decoder must not lose data.
				s.log.Warn("store: persisted value rejected by decoder; kept undecoded", "file", path, "key", string(kv.Key), "err", err)
			}
			v.obj = obj
		}
		s.idx.add(string(kv.Key), v)
		s.attachLease(kv.Lease, string(kv.Key))
	}
	s.rev = d.Revision
	// Watch history is not persisted: nothing before now can be replayed.
	s.compactRev = d.Revision
	return true, nil
}

// persister writes the data file after changes, at most every
// flushInterval, atomically (temp file, fsync, rename).
type persister struct {
	s     *memStore
	path  string
	dirty atomic.Bool
	wake  chan struct{}
	stopC chan struct{}
	doneC chan struct{}

	mu      sync.Mutex
	lastErr error
}

func newPersister(s *memStore, path string) *persister {
	p := &persister{s: s, path: path, wake: make(chan struct{}, 1), stopC: make(chan struct{}), doneC: make(chan struct{})}
	go p.run()
	return p
}

func (s *memStore) markDirty() {
	if s.persist == nil {
		return
	}
	s.persist.dirty.Store(true)
	select {
	case s.persist.wake <- struct{}{}:
	default:
	}
}

func (p *persister) run() {
	defer close(p.doneC)
	for {
		select {
		case <-p.stopC:
			return
		case <-p.wake:
		}
		start := time.Now()
		p.flushIfDirty()
		// Big stores take long to write: never spend more than about a
		// third of the time writing the file.
		wait := max(flushInterval, 2*time.Since(start))
		select {
		case <-p.stopC:
			return
		case <-time.After(wait):
		}
	}
}

func (p *persister) flushIfDirty() {
	if !p.dirty.Swap(false) {
		return
	}
	err := p.flush()
	p.mu.Lock()
	p.lastErr = err
	p.mu.Unlock()
	if err != nil {
		p.dirty.Store(true) // retry on the next change or at Close
		p.s.log.Error("store: writing data file", "file", p.path, "err", err)
	}
}

// close stops the writer and flushes pending changes.
func (p *persister) close() error {
	close(p.stopC)
	<-p.doneC
	if p.dirty.Load() {
		p.dirty.Store(false)
		return p.flush()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.lastErr
}

func (p *persister) snapshot() *fileData {
	s := p.s
	s.mu.RLock()
	defer s.mu.RUnlock()
	d := &fileData{Format: dataFileFormat, Revision: s.rev, CompactRevision: s.compactRev}
	d.KVs = make([]fileKV, 0, s.idx.tree.Len())
	s.idx.ascend([]byte{0}, []byte{}, func(ki *keyIndex) bool {
		if v := ki.latest(); v != nil {
			d.KVs = append(d.KVs, fileKV{
				Key: v.kv.Key, Value: v.kv.Value, CreateRevision: v.kv.CreateRevision,
				ModRevision: v.kv.ModRevision, Version: v.kv.Version, Lease: v.kv.Lease,
			})
		}
		return true
	})
	for _, l := range s.leases {
		d.Leases = append(d.Leases, fileLease{ID: l.id, TTL: l.ttl})
	}
	sort.Slice(d.Leases, func(i, j int) bool { return d.Leases[i].ID < d.Leases[j].ID })
	return d
}

func (p *persister) flush() error {
	b, err := json.Marshal(p.snapshot())
	if err != nil {
		return fmt.Errorf("store: encode data file: %w", err)
	}
	return writeFileAtomic(p.path, b)
}

func writeFileAtomic(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("store: write data file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("store: write data file %s: %w", path, err)
	}
	return nil
}

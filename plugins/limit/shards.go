package limit

import (
	"hash/maphash"
	"sync"
	"time"
)

const numShards = 16

// table is a sharded map from limiting key to per-key state. Entries idle
// longer than idle are swept lazily, so memory stays bounded by the
// number of keys active in a recent window.
type table[V any] struct {
	seed   maphash.Seed
	idle   time.Duration
	shards [numShards]shard[V]
}

type shard[V any] struct {
	mu      sync.Mutex
	m       map[string]*item[V]
	inserts int
}

type item[V any] struct {
	v    V
	last time.Time
}

func newTable[V any](idle time.Duration) *table[V] {
	t := &table[V]{seed: maphash.MakeSeed(), idle: idle}
	for i := range t.shards {
		t.shards[i].m = map[string]*item[V]{}
	}
	return t
}

// with runs fn on key's state under its shard lock, creating it if needed.
func (t *table[V]) with(key string, now time.Time, fn func(v *V, last time.Time, fresh bool)) {
	s := &t.shards[maphash.String(t.seed, key)%numShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	it, ok := s.m[key]
	if !ok {
		if s.inserts++; s.inserts >= 1024 {
			s.inserts = 0
			for k, e := range s.m {
				if now.Sub(e.last) > t.idle {
					delete(s.m, k)
				}
			}
		}
		it = &item[V]{}
		s.m[key] = it
	}
	fn(&it.v, it.last, !ok)
	it.last = now
}

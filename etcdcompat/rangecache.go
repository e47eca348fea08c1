package etcdcompat

import (
	"sync"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// Range replies cached by rangeCache: only large ones (APISIX's readdir of
// a whole directory, etcdctl get --prefix) are worth keeping.
const (
	rangeCacheMinBytes   = 64 << 10
	rangeCacheMaxEntries = 16
)

// DefaultRangeCacheBytes is the default bound of the encoded Range reply
// cache (Options.RangeCacheBytes).
const DefaultRangeCacheBytes = 64 << 20

// rangeCache keeps the encoded replies of recent large Range requests at
// the store's current revision. A reply at revision R is valid while the
// store is at R, since every change of data moves the revision; an entry
// is served only then and replaced otherwise. Cached replies are shared
// and never mutated; the server's codec sends their encoded bytes as is.
type rangeCache struct {
	maxBytes int

	mu      sync.Mutex
	entries map[string]*cachedRange // by encoded request
	byResp  map[*pb.RangeResponse][]byte
	jsonOf  map[*pb.RangeResponse][]byte // gateway JSON of cached replies
	order   []string                     // insertion order, for eviction
	bytes   int
}

type cachedRange struct {
	rev  int64
	resp *pb.RangeResponse
}

func newRangeCache(maxBytes int) *rangeCache {
	return &rangeCache{maxBytes: maxBytes, entries: make(map[string]*cachedRange),
		byResp: make(map[*pb.RangeResponse][]byte), jsonOf: make(map[*pb.RangeResponse][]byte)}
}

// cacheable reports whether r reads the current revision.
func (c *rangeCache) cacheable(r *pb.RangeRequest) bool {
	return c != nil && c.maxBytes > 0 && r.Revision == 0
}

// get returns the cached reply to the encoded request key at revision rev.
func (c *rangeCache) get(key string, rev int64) *pb.RangeResponse {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.entries[key]
	if e == nil || e.rev != rev {
		return nil
	}
	return e.resp
}

// put caches resp (already complete, header filled) if it is large
// enough, evicting the oldest entries beyond the limits.
func (c *rangeCache) put(key string, resp *pb.RangeResponse) {
	size := resp.Size()
	if size < rangeCacheMinBytes || size > c.maxBytes/2 {
		return
	}
	enc := make([]byte, size)
	n, err := resp.MarshalToSizedBuffer(enc)
	if err != nil || n != size {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.entries[key]; old != nil {
		c.drop(old.resp)
		c.removeOrder(key)
	}
	c.entries[key] = &cachedRange{rev: resp.Header.Revision, resp: resp}
	c.byResp[resp] = enc
	c.order = append(c.order, key)
	c.bytes += size
	for len(c.order) > rangeCacheMaxEntries || c.bytes > c.maxBytes {
		oldest := c.order[0]
		c.order = c.order[1:]
		if e := c.entries[oldest]; e != nil {
			c.drop(e.resp)
			delete(c.entries, oldest)
		}
	}
}

// drop forgets the encodings of resp; c.mu is held.
func (c *rangeCache) drop(resp *pb.RangeResponse) {
	c.bytes -= len(c.byResp[resp]) + len(c.jsonOf[resp])
	delete(c.byResp, resp)
	delete(c.jsonOf, resp)
}

// json returns the gateway JSON of a cached reply, if encoded already.
func (c *rangeCache) json(resp *pb.RangeResponse) []byte {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jsonOf[resp]
}

// setJSON keeps the gateway JSON of resp if resp is a cached reply.
func (c *rangeCache) setJSON(resp *pb.RangeResponse, b []byte) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, cached := c.byResp[resp]; !cached || c.jsonOf[resp] != nil {
		return
	}
	c.jsonOf[resp] = b
	c.bytes += len(b)
}

func (c *rangeCache) removeOrder(key string) {
	for i, k := range c.order {
		if k == key {
			c.order = append(c.order[:i], c.order[i+1:]...)
			return
		}
	}
}

// encoded returns the wire bytes of a cached reply, or nil.
func (c *rangeCache) encoded(resp *pb.RangeResponse) []byte {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.byResp[resp]
}

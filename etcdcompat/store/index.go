package store

import (
	"github.com/google/btree"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// version is one revision of one key. A tombstone (the key was deleted at
// kv.ModRevision) has kv.CreateRevision == 0 and only Key and ModRevision
// set, which is exactly the KeyValue etcd puts in a DELETE event. A version
// is immutable once it is in the index; its kv is shared with watch events.
type version struct {
	kv  mvccpb.KeyValue
	obj any
}

func (v *version) tombstone() bool { return v.kv.CreateRevision == 0 }

// keyIndex holds the versions of one key still needed for reads at or
// after the compaction revision, oldest first.
type keyIndex struct {
	key  string
	revs []*version
}

// Less orders keyIndexes by key for the B-tree.
func (k *keyIndex) Less(than btree.Item) bool { return k.key < than.(*keyIndex).key }

// at returns the live version of the key at revision rev, or nil if the
// key did not exist then.
func (k *keyIndex) at(rev int64) *version {
	for i := len(k.revs) - 1; i >= 0; i-- {
		v := k.revs[i]
		if v.kv.ModRevision <= rev {
			if v.tombstone() {
				return nil
			}
			return v
		}
	}
	return nil
}

// latest returns the current live version or nil.
func (k *keyIndex) latest() *version {
	if len(k.revs) == 0 {
		return nil
	}
	v := k.revs[len(k.revs)-1]
	if v.tombstone() {
		return nil
	}
	return v
}

// needsCompaction reports whether compact could drop anything.
func (k *keyIndex) needsCompaction() bool {
	return len(k.revs) > 1 || (len(k.revs) == 1 && k.revs[0].tombstone())
}

// compact drops versions no read at or after rev can see. It reports
// whether the key has no versions left.
func (k *keyIndex) compact(rev int64) bool {
	idx := -1
	for i := len(k.revs) - 1; i >= 0; i-- {
		if k.revs[i].kv.ModRevision <= rev {
			idx = i
			break
		}
	}
	if idx < 0 {
		return len(k.revs) == 0
	}
	drop := idx
	if k.revs[idx].tombstone() {
		drop = idx + 1
	}
	if drop > 0 {
		n := copy(k.revs, k.revs[drop:])
		for i := n; i < len(k.revs); i++ {
			k.revs[i] = nil
		}
		k.revs = k.revs[:n]
	}
	return len(k.revs) == 0
}

// index is the sorted key index: a B-tree of keyIndex by key.
type index struct {
	tree *btree.BTree
	// multi holds the keys that compaction may shrink (more than one
	// version, or a tombstone), so compaction does not scan every key.
	multi map[string]*keyIndex
}

func newIndex() *index {
	return &index{tree: btree.New(32), multi: make(map[string]*keyIndex)}
}

func (ix *index) get(key []byte) *keyIndex {
	it := ix.tree.Get(&keyIndex{key: string(key)})
	if it == nil {
		return nil
	}
	return it.(*keyIndex)
}

// add appends a version to key's history, creating the key if needed.
func (ix *index) add(key string, v *version) {
	var ki *keyIndex
	if it := ix.tree.Get(&keyIndex{key: key}); it != nil {
		ki = it.(*keyIndex)
	} else {
		ki = &keyIndex{key: key}
		ix.tree.ReplaceOrInsert(ki)
	}
	ki.revs = append(ki.revs, v)
	if ki.needsCompaction() {
		ix.multi[key] = ki
	}
}

// ascend visits the keys in [key, end) in order: end nil means the single
// key, an empty end means every key >= key (etcd's mkGteRange).
func (ix *index) ascend(key, end []byte, fn func(*keyIndex) bool) {
	if end == nil {
		if ki := ix.get(key); ki != nil {
			fn(ki)
		}
		return
	}
	endS := string(end)
	ix.tree.AscendGreaterOrEqual(&keyIndex{key: string(key)}, func(it btree.Item) bool {
		ki := it.(*keyIndex)
		if len(endS) > 0 && ki.key >= endS {
			return false
		}
		return fn(ki)
	})
}

// compact drops versions older than rev that no read at rev or later can
// see, and keys with nothing left.
func (ix *index) compact(rev int64) {
	for key, ki := range ix.multi {
		if ki.compact(rev) {
			ix.tree.Delete(ki)
			delete(ix.multi, key)
			continue
		}
		if !ki.needsCompaction() {
			delete(ix.multi, key)
		}
	}
}

// gteRange maps etcd's "\x00" range end (all keys >= key) to an empty,
// non-nil slice; a nil or empty range end means a single key (nil).
func gteRange(end []byte) []byte {
	if len(end) == 1 && end[0] == 0 {
		return []byte{}
	}
	if len(end) == 0 {
		return nil
	}
	return end
}

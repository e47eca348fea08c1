package router

import "sort"

// trie is a compressed radix tree over byte strings used for longest-prefix
// lookups without allocation. With rev set, keys are stored reversed and
// lookups walk the input from its end, which turns suffix matching
// (wildcard hosts) into prefix matching, as radixtree_host_uri does with
// reversed hosts.
type trie[V any] struct {
	root trieNode[V]
	rev  bool
}

type trieNode[V any] struct {
	edge     string // bytes on the edge into this node (reversed when rev)
	labels   []byte // first byte of each child's edge, sorted
	children []*trieNode[V]
	val      *V
	has      bool
	up       *trieNode[V] // nearest ancestor holding a value
}

func reverse(s string) string {
	b := []byte(s)
	for i, j := 0, len(b)-1; i < j; i, j = i+1, j-1 {
		b[i], b[j] = b[j], b[i]
	}
	return string(b)
}

// get returns the value stored for key, creating it with mk if absent.
func (t *trie[V]) get(key string, mk func() *V) *V {
	if t.rev {
		key = reverse(key)
	}
	n := &t.root
	for {
		if len(key) == 0 {
			if !n.has {
				n.val, n.has = mk(), true
			}
			return n.val
		}
		i := sort.Search(len(n.labels), func(i int) bool { return n.labels[i] >= key[0] })
		if i == len(n.labels) || n.labels[i] != key[0] {
			c := &trieNode[V]{edge: key, val: mk(), has: true}
			n.labels = append(n.labels, 0)
			n.children = append(n.children, nil)
			copy(n.labels[i+1:], n.labels[i:])
			copy(n.children[i+1:], n.children[i:])
			n.labels[i], n.children[i] = key[0], c
			return c.val
		}
		c := n.children[i]
		common := 0
		for common < len(c.edge) && common < len(key) && c.edge[common] == key[common] {
			common++
		}
		if common < len(c.edge) {
			// Split c at common.
			mid := &trieNode[V]{edge: c.edge[:common], labels: []byte{c.edge[common]}, children: []*trieNode[V]{c}}
			c.edge = c.edge[common:]
			n.children[i] = mid
			c = mid
		}
		key = key[common:]
		n = c
	}
}

// finish links every node to its nearest valued ancestor; call once after
// the last insert.
func (t *trie[V]) finish() {
	var walk func(n *trieNode[V], up *trieNode[V])
	walk = func(n *trieNode[V], up *trieNode[V]) {
		n.up = up
		if n.has {
			up = n
		}
		for _, c := range n.children {
			walk(c, up)
		}
	}
	walk(&t.root, nil)
}

// longest returns the node holding the longest stored key that is a prefix
// of s (a suffix of s when rev), or nil. Walk shorter matches with node.up.
func (t *trie[V]) longest(s string) *trieNode[V] {
	n := &t.root
	var last *trieNode[V]
	end := len(s) // rev: unconsumed input is s[:end]
	pos := 0      // fwd: unconsumed input is s[pos:]
	for {
		if n.has {
			last = n
		}
		var b byte
		if t.rev {
			if end == 0 {
				return last
			}
			b = s[end-1]
		} else {
			if pos == len(s) {
				return last
			}
			b = s[pos]
		}
		c := n.child(b)
		if c == nil {
			return last
		}
		e := c.edge
		if t.rev {
			if len(e) > end {
				return last
			}
			for i := 0; i < len(e); i++ {
				if s[end-1-i] != e[i] {
					return last
				}
			}
			end -= len(e)
		} else {
			if len(e) > len(s)-pos || s[pos:pos+len(e)] != e {
				return last
			}
			pos += len(e)
		}
		n = c
	}
}

func (n *trieNode[V]) child(b byte) *trieNode[V] {
	l := n.labels
	if len(l) <= 8 {
		for i, x := range l {
			if x == b {
				return n.children[i]
			}
		}
		return nil
	}
	lo, hi := 0, len(l)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if l[m] < b {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo < len(l) && l[lo] == b {
		return n.children[lo]
	}
	return nil
}

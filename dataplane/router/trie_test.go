package router

import (
	"math/rand/v2"
	"sort"
	"strings"
	"testing"
)

// TestTrieAgainstBruteForce checks that longest() followed by the up links
// yields exactly the stored keys that prefix (or, reversed, suffix) the
// input, from the longest to the shortest.
func TestTrieAgainstBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab/.cdefghijkl" // more than 8 first bytes: binary search in child()
	word := func(max int) string {
		n := rng.IntN(max + 1)
		var b strings.Builder
		for i := 0; i < n; i++ {
			b.WriteByte(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String()
	}
	for _, rev := range []bool{false, true} {
		for round := 0; round < 200; round++ {
			tr := trie[string]{rev: rev}
			keys := map[string]bool{}
			for i := 0; i < 1+rng.IntN(80); i++ {
				k := word(4)
				keys[k] = true
				v := tr.get(k, func() *string { s := k; return &s })
				if *v != k {
					t.Fatalf("get(%q) returned the value of %q", k, *v)
				}
			}
			tr.finish()
			for q := 0; q < 50; q++ {
				s := word(6)
				var want []string
				for k := range keys {
					if (!rev && strings.HasPrefix(s, k)) || (rev && strings.HasSuffix(s, k)) {
						want = append(want, k)
					}
				}
				sort.Slice(want, func(i, j int) bool { return len(want[i]) > len(want[j]) })
				var got []string
				for n := tr.longest(s); n != nil; n = n.up {
					got = append(got, *n.val)
				}
				if strings.Join(got, "|") != strings.Join(want, "|") {
					t.Fatalf("rev=%v keys=%v input %q: got %q, want %q", rev, keys, s, got, want)
				}
			}
		}
	}
}

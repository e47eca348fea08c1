package wrk

import (
	"os"
	"path/filepath"
	"testing"
)

func BenchmarkParseResult(b *testing.B) {
	in, err := os.ReadFile(filepath.Join("testdata", "c2.txt"))
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		o, err := Parse(in)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := o.Result(); err != nil {
			b.Fatal(err)
		}
	}
}

//go:build !cgo

package goplugin_test

import (
	"errors"
	"testing"

	"github.com/meshagent/meshagent/plugins/goplugin"
)

func TestStaticBuildSaysNotCompiled(t *testing.T) {
	if _, err := goplugin.Load("/any.so"); !errors.Is(err, goplugin.ErrNotCompiled) {
		t.Fatalf("err = %v", err)
	}
}

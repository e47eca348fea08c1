//go:build !linux

package dataplane

import (
	"io"
	"net"
)

// h2RawIO is Linux only (h2raw_linux.go).
type h2RawIO struct{ io.Reader }

func newH2RawIO(net.Conn) *h2RawIO { return nil }

func (r *h2RawIO) writer() io.Writer { return nil }

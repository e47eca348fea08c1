package backend

import (
	"encoding/binary"
	"io"
	"net"
)

// TCP modes: the first byte a client sends on the TCP port picks one.
const (
	// ModeEcho makes the server echo every following byte.
	ModeEcho byte = 'E'
	// ModeBulk makes the server read transfers: an 8-byte big-endian length
	// L, then L bytes it discards, answered by the same 8-byte length once
	// all L bytes arrived. Transfers repeat until the client closes.
	ModeBulk byte = 'B'
)

// MaxBulkTransfer bounds one bulk transfer (1 TiB); longer headers close
// the connection.
const MaxBulkTransfer = 1 << 40

func (s *Server) acceptTCP(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		select {
		case <-s.done:
			s.mu.Unlock()
			_ = c.Close()
			return
		default:
		}
		s.tcps[c] = struct{}{}
		s.mu.Unlock()
		s.goServe(func() {
			defer func() {
				s.mu.Lock()
				delete(s.tcps, c)
				s.mu.Unlock()
				_ = c.Close()
			}()
			s.serveTCP(c)
		})
	}
}

func (s *Server) serveTCP(c net.Conn) {
	var mode [1]byte
	if _, err := io.ReadFull(c, mode[:]); err != nil {
		return
	}
	switch mode[0] {
	case ModeEcho:
		_, _ = io.Copy(c, c)
	case ModeBulk:
		var hdr [8]byte
		for {
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			l := binary.BigEndian.Uint64(hdr[:])
			if l > MaxBulkTransfer {
				s.log.Warn("bulk transfer too long", "bytes", l)
				return
			}
			if n, err := io.CopyN(io.Discard, c, int64(l)); err != nil || uint64(n) != l {
				return
			}
			if _, err := c.Write(hdr[:]); err != nil {
				return
			}
		}
	default:
		s.log.Warn("unknown tcp mode", "byte", mode[0])
	}
}

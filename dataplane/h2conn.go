package dataplane

import (
	"runtime"
	"sync"

	"golang.org/x/net/http2"
)

// What both ends of an HTTP/2 connection share: the client of upstreams
// (h2client.go) and the server (h2server.go) write frames under a write
// lock into a buffer a flusher goroutine writes out, and apply SETTINGS
// and flow control the same way.

// poke wakes the goroutine waiting on ch (capacity 1), if it is not
// already due to wake.
func poke(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// h2FlushLoop calls flushOut each time ch is poked, until done or a
// write fails; frames of all the streams that wrote meanwhile share the
// write. With yield, it first lets the goroutines that poked write on.
func h2FlushLoop(ch chan struct{}, done <-chan struct{}, yield bool, flushOut func() error) {
	for {
		select {
		case <-ch:
		case <-done:
			return
		}
		if yield {
			runtime.Gosched()
		}
		if flushOut() != nil {
			return
		}
	}
}

// h2flusher is a connection (client or server side) whose queued frames
// flush() sends.
type h2flusher interface{ flush() }

// sendWindowUpdates gives back window: supd to stream id, cupd to the
// connection (either may be 0), written under wmu and flushed.
func sendWindowUpdates(wmu *sync.Mutex, fr *http2.Framer, f h2flusher, id, supd, cupd uint32) {
	if supd == 0 && cupd == 0 {
		return
	}
	wmu.Lock()
	if supd > 0 {
		_ = fr.WriteWindowUpdate(id, supd)
	}
	if cupd > 0 {
		_ = fr.WriteWindowUpdate(0, cupd)
	}
	wmu.Unlock()
	f.flush()
}

// applyH2Settings applies a SETTINGS frame's values at either end of a
// connection (wmu and mu held): the encoder's table size, the peer's
// frame size, MAX_CONCURRENT_STREAMS (to maxStreams, if not nil) and the
// initial stream window, whose change moves the send window of every open
// stream by the difference (adjust reports false when one passed 2^31-1:
// a FLOW_CONTROL_ERROR, RFC 9113 6.9.2).
func applyH2Settings(f *http2.SettingsFrame, enc *h2Encoder, maxFrame *uint32, initWin *int64, adjust func(delta int64) bool, maxStreams func(uint32)) error {
	return f.ForeachSetting(func(s http2.Setting) error {
		if err := s.Valid(); err != nil {
			return err
		}
		switch s.ID {
		case http2.SettingHeaderTableSize:
			enc.SetMaxDynamicTableSizeLimit(s.Val)
		case http2.SettingMaxFrameSize:
			*maxFrame = s.Val
		case http2.SettingMaxConcurrentStreams:
			if maxStreams != nil {
				maxStreams(s.Val)
			}
		case http2.SettingInitialWindowSize:
			ok := adjust(int64(s.Val) - *initWin)
			*initWin = int64(s.Val)
			if !ok {
				return http2.ConnectionError(http2.ErrCodeFlowControl)
			}
		}
		return nil
	})
}

// moveWindows moves the send window of every stream of m by delta (a new
// SETTINGS_INITIAL_WINDOW_SIZE); false if one passed 2^31-1.
func moveWindows[S interface{ sendWindow() *int64 }](m map[uint32]S, delta int64) bool {
	ok := true
	for _, st := range m {
		w := st.sendWindow()
		*w += delta
		ok = ok && *w <= 1<<31-1
	}
	return ok
}

package dataplane

import (
	"bytes"
	"errors"
	"testing"

	"golang.org/x/net/http2"
)

// settingsFrame is a SETTINGS frame as read off the wire.
func settingsFrame(t *testing.T, ss ...http2.Setting) *http2.SettingsFrame {
	t.Helper()
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, &buf)
	if err := fr.WriteSettings(ss...); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	return f.(*http2.SettingsFrame)
}

// applyH2Settings, as both ends use it: the encoder's table, frame size,
// stream limit, and the initial window moving every open stream's send
// window, a move past 2^31-1 and an invalid value being connection errors.
func TestApplyH2Settings(t *testing.T) {
	var hbuf bytes.Buffer
	enc := newH2Encoder(&hbuf)
	maxFrame, initWin := uint32(16384), int64(65535)
	var maxStreams uint32
	streams := map[uint32]*h2Stream{1: {sendWin: 65535}, 3: {sendWin: 1000}}
	adjust := func(d int64) bool { return moveWindows(streams, d) }
	setMax := func(n uint32) { maxStreams = n }

	err := applyH2Settings(settingsFrame(t,
		http2.Setting{ID: http2.SettingHeaderTableSize, Val: 100},
		http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 20},
		http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 7},
		http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535 + 10},
	), enc, &maxFrame, &initWin, adjust, setMax)
	if err != nil {
		t.Fatal(err)
	}
	if enc.maxSize != 100 || !enc.update || maxFrame != 1<<20 || maxStreams != 7 || initWin != 65545 {
		t.Fatalf("table %d (update %v), frame %d, streams %d, initial window %d", enc.maxSize, enc.update, maxFrame, maxStreams, initWin)
	}
	if streams[1].sendWin != 65545 || streams[3].sendWin != 1010 {
		t.Fatalf("send windows %d, %d", streams[1].sendWin, streams[3].sendWin)
	}

	streams[3].sendWin = 1<<31 - 1 - 5 // granted by WINDOW_UPDATEs
	err = applyH2Settings(settingsFrame(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65545 + 6}), enc, &maxFrame, &initWin, adjust, setMax)
	var ce http2.ConnectionError
	if !errors.As(err, &ce) || http2.ErrCode(ce) != http2.ErrCodeFlowControl {
		t.Fatalf("window past 2^31-1: %v, want a FLOW_CONTROL_ERROR", err)
	}
	if err := applyH2Settings(settingsFrame(t, http2.Setting{ID: http2.SettingEnablePush, Val: 2}), enc, &maxFrame, &initWin, adjust, nil); err == nil {
		t.Fatal("ENABLE_PUSH 2 accepted")
	}
}

package dataplane

import (
	"bytes"
	"io"
	"net/http/httputil"
	"strings"
	"testing"
)

// chunkCase is a chunked body and how both engines must take it: whole
// (the decoded data), malformed (at the offset of the offending byte),
// or cut short.
type chunkCase struct {
	name, in string
	data     string // the decoded body, when whole
	bad      bool
	at       int // bad: offset of the offending byte
	short    bool
}

var chunkCases = []chunkCase{
	{name: "chunks", in: "5;ext=1\r\nhello\r\n0000A\r\n0123456789\r\n0\r\nTrailer-X: y\r\n\r\n", data: "hello0123456789"},
	{name: "empty", in: "0\r\n\r\n"},
	{name: "space before CRLF", in: "5 \r\nhello\r\n0\r\n\r\n", data: "hello"},
	{name: "space before ext", in: "5\t ;a=\"b c\"\r\nhello\r\n0;x\r\n\r\n", data: "hello"},
	{name: "15 digits", in: "000000000000005\r\nhello\r\n0\r\n\r\n", data: "hello"},
	{name: "longest size line", in: "5;" + strings.Repeat("a", maxChunkLine-4) + "\r\nhello\r\n0\r\n\r\n", data: "hello"},
	{name: "longest trailer line", in: "0\r\nX:" + strings.Repeat("a", maxChunkLine-4) + "\r\n\r\n"},
	{name: "most trailer lines", in: "0\r\n" + strings.Repeat("X: y\r\n", maxTrailerLines-1) + "\r\n"},

	{name: "no digit", in: "x\r\n", bad: true},
	{name: "empty size line", in: "\r\n", bad: true},
	{name: "ext without size", in: ";a\r\n", bad: true},
	{name: "16 digits", in: "0000000000000005\r\n", bad: true, at: 15},
	{name: "overflow", in: "ffffffffffffffff1\r\n", bad: true, at: 15},
	{name: "junk after size", in: "5x\r\nhello\r\n0\r\n\r\n", bad: true, at: 1},
	{name: "junk after space", in: "5 x\r\nhello\r\n0\r\n\r\n", bad: true, at: 2},
	{name: "bare LF size", in: "5\nhello\r\n0\r\n\r\n", bad: true, at: 1},
	{name: "bare LF ext", in: "5;a\nhello\r\n0\r\n\r\n", bad: true, at: 3},
	{name: "bare CR ext", in: "5;a\rb\r\nhello\r\n0\r\n\r\n", bad: true, at: 4},
	{name: "no CRLF after data", in: "5\r\nhelloX", bad: true, at: 8},
	{name: "bare LF after data", in: "5\r\nhello\n0\r\n\r\n", bad: true, at: 8},
	{name: "bare LF end", in: "0\r\n\n", bad: true, at: 3},
	{name: "bare LF trailer", in: "0\r\nX: y\n\r\n", bad: true, at: 7},
	{name: "bare CR trailer", in: "0\r\nX: \ry\r\n\r\n", bad: true, at: 7},
	{name: "size line too long", in: "5;" + strings.Repeat("a", maxChunkLine-3) + "\r\nhello\r\n0\r\n\r\n", bad: true, at: maxChunkLine},
	{name: "trailer line too long", in: "0\r\nX:" + strings.Repeat("a", maxChunkLine-3) + "\r\n\r\n", bad: true, at: 3 + maxChunkLine},
	{name: "too many trailer lines", in: "0\r\n" + strings.Repeat("X: y\r\n", maxTrailerLines) + "\r\n", bad: true, at: 3 + 6*maxTrailerLines - 1},

	{name: "cut in size", in: "1", short: true},
	{name: "cut in data", in: "5\r\nhel", short: true},
	{name: "cut in trailer", in: "0\r\nX: y\r\n", short: true},
}

// TestChunkScanner runs each case through both users of the scanner:
// the event loop's feed, whole and a byte at a time, and the fasthttp
// engine's upstreamBody, read in pieces of several sizes.
func TestChunkScanner(t *testing.T) {
	for _, tc := range chunkCases {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			next := in
			if !tc.short {
				next = append(in[:len(in):len(in)], "GET / HTTP/1.1\r\n"...) // what follows the body
			}
			var whole chunkScanner
			n, done, err := whole.feed(next)
			checkFeed(t, tc, "whole", n, done, err)
			var bytewise chunkScanner
			n, done, err = 0, false, nil
			for i := 0; i < len(in) && err == nil && !done; i++ {
				var k int
				k, done, err = bytewise.feed(in[i : i+1])
				n += k
			}
			checkFeed(t, tc, "bytewise", n, done, err)
			for _, step := range []int{0, 1, 3, 4096} {
				out, used, err := decodeChunked(in, step)
				switch {
				case tc.bad:
					if err != errBadChunk || used != tc.at {
						t.Errorf("upstreamBody step %d: err %v at %d, want %v at %d", step, err, used, errBadChunk, tc.at)
					}
				case tc.short:
					if err != io.ErrUnexpectedEOF {
						t.Errorf("upstreamBody step %d: err %v, want %v", step, err, io.ErrUnexpectedEOF)
					}
				default:
					if err != nil || string(out) != tc.data || used != len(in) {
						t.Errorf("upstreamBody step %d: %q, %v, took %d; want %q, %d", step, out, err, used, tc.data, len(in))
					}
				}
			}
		})
	}
}

func checkFeed(t *testing.T, tc chunkCase, how string, n int, done bool, err error) {
	t.Helper()
	switch {
	case tc.bad:
		if err != errBadChunk || n != tc.at {
			t.Errorf("feed %s: err %v at %d, want %v at %d", how, err, n, errBadChunk, tc.at)
		}
	case tc.short:
		if err != nil || done || n != len(tc.in) {
			t.Errorf("feed %s: n %d done %v err %v, want %d false nil", how, n, done, err, len(tc.in))
		}
	default:
		if err != nil || !done || n != len(tc.in) {
			t.Errorf("feed %s: n %d done %v err %v, want %d true nil", how, n, done, err, len(tc.in))
		}
	}
}

// TestChunkScannerSplit feeds a body in two parts split at every offset.
func TestChunkScannerSplit(t *testing.T) {
	body := "5;ext=1\r\nhello\r\n0000A\r\n0123456789\r\n0\r\nTrailer-X: y\r\n\r\n"
	for split := 1; split < len(body); split++ {
		var s chunkScanner
		n1, done1, err := s.feed([]byte(body[:split]))
		if err != nil || done1 || n1 != split {
			t.Fatalf("split %d: first part n %d done %v err %v", split, n1, done1, err)
		}
		n2, done, err := s.feed([]byte(body[split:] + "GET / HTTP/1.1"))
		if err != nil || !done || n1+n2 != len(body) {
			t.Fatalf("split %d: n %d done %v err %v", split, n1+n2, done, err)
		}
	}
}

// FuzzChunkState: chunked bodies are untrusted bytes from upstreams. Fed
// whole or in two parts, the scanner gives the same verdict.
func FuzzChunkState(f *testing.F) {
	f.Add([]byte("3\r\nabc\r\n0\r\n\r\n"), 2)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		if split < 0 || split > len(b) {
			split = len(b) / 2
		}
		var s1, s2 chunkScanner
		n, done, err := s1.feed(b)
		if n > len(b) || done && err != nil {
			t.Fatalf("n %d done %v err %v", n, done, err)
		}
		a, d1, e1 := s2.feed(b[:split])
		if e1 != nil || d1 {
			return
		}
		c, d2, e2 := s2.feed(b[split:])
		if (e2 != nil) != (err != nil) || d2 != done || a+c != n {
			t.Fatalf("split %d: %d/%v/%v vs %d/%v/%v", split, a+c, d2, e2, n, done, err)
		}
	})
}

// FuzzChunkedEngines feeds the same bytes to both engines' readers of a
// chunked upstream body, the event loop's (which relays the body and
// finds its end) and the fasthttp engine's (which de-chunks it), and
// checks that they agree: the same verdict (whole, malformed, cut
// short), at the same byte, and the data net/http/httputil decodes.
func FuzzChunkedEngines(f *testing.F) {
	for _, tc := range chunkCases {
		if len(tc.in) < 512 {
			f.Add([]byte(tc.in), uint8(0))
			f.Add([]byte(tc.in), uint8(3))
		}
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		var s chunkScanner
		n, done, ferr := s.feed(data)
		out, used, berr := decodeChunked(data, int(step%8))
		switch {
		case ferr != nil:
			if ferr != errBadChunk || berr != errBadChunk || used != n {
				t.Fatalf("%q: feed %v at %d, upstreamBody %v at %d", data, ferr, n, berr, used)
			}
		case !done:
			if berr != io.ErrUnexpectedEOF || used != n || n != len(data) {
				t.Fatalf("%q: feed cut short at %d, upstreamBody %v at %d", data, n, berr, used)
			}
		default:
			if berr != nil || used != n || len(out) > n {
				t.Fatalf("%q: feed ended at %d, upstreamBody %v at %d with %d bytes", data, n, berr, used, len(out))
			}
			want, werr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(data)))
			if werr == nil && !bytes.Equal(out, want) {
				t.Fatalf("%q: decoded %q, httputil %q", data, out, want)
			}
		}
	})
}

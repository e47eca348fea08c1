package dataplane

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseReqHead(t *testing.T) {
	cases := []struct {
		name, in string
		ok       bool
		err      error
		check    func(*testing.T, *reqHead)
	}{
		{name: "simple", in: "GET /a/b?x=1 HTTP/1.1\r\nHost: Example.com:8080\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n", ok: true,
			check: func(t *testing.T, h *reqHead) {
				if string(h.method) != "GET" || string(h.path) != "/a/b" || string(h.query) != "x=1" || string(h.host) != "Example.com:8080" {
					t.Fatalf("%q %q %q %q", h.method, h.path, h.query, h.host)
				}
				if h.xffCount != 1 || h.contentLength != -1 || h.len != len("GET /a/b?x=1 HTTP/1.1\r\nHost: Example.com:8080\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n") {
					t.Fatalf("xff %d cl %d len %d", h.xffCount, h.contentLength, h.len)
				}
			}},
		{name: "partial", in: "GET / HTTP/1.1\r\nHost: a\r\n"},
		{name: "body length", in: "POST /u HTTP/1.1\r\nHost: a\r\nContent-Length: 12\r\nConnection: close\r\n\r\nhello", ok: true,
			check: func(t *testing.T, h *reqHead) {
				if h.contentLength != 12 || !h.close {
					t.Fatalf("cl %d close %v", h.contentLength, h.close)
				}
			}},
		{name: "http/1.0", in: "GET / HTTP/1.0\r\nHost: a\r\n\r\n", err: errSlowPath},
		{name: "no host", in: "GET / HTTP/1.1\r\nX: y\r\n\r\n", err: errSlowPath},
		{name: "two hosts", in: "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", err: errSlowPath},
		{name: "absolute form", in: "GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", err: errSlowPath},
		{name: "percent path", in: "GET /a%20b HTTP/1.1\r\nHost: a\r\n\r\n", err: errSlowPath},
		{name: "dot segment", in: "GET /a/../b HTTP/1.1\r\nHost: a\r\n\r\n", err: errSlowPath},
		{name: "dot end", in: "GET /a/. HTTP/1.1\r\nHost: a\r\n\r\n", err: errSlowPath},
		{name: "dotfile ok", in: "GET /a/.well-known HTTP/1.1\r\nHost: a\r\n\r\n", ok: true},
		{name: "double slash", in: "GET /a//b HTTP/1.1\r\nHost: a\r\n\r\n", err: errSlowPath},
		{name: "chunked body", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", err: errSlowPath},
		{name: "expect", in: "POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", err: errSlowPath},
		{name: "upgrade", in: "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n", err: errSlowPath},
		{name: "two lengths", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n", err: errSlowPath},
		{name: "bad length", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", err: errSlowPath},
		{name: "bare lf", in: "GET / HTTP/1.1\nHost: a\n\n", err: errSlowPath},
		{name: "obs fold", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", err: errSlowPath},
		{name: "lowercase method", in: "get / HTTP/1.1\r\nHost: a\r\n\r\n", err: errSlowPath},
		{name: "connect", in: "CONNECT a:443 HTTP/1.1\r\nHost: a\r\n\r\n", err: errSlowPath},
		{name: "control char", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n", err: errSlowPath},
		{name: "fragment", in: "GET /?a#b HTTP/1.1\r\nHost: a\r\n\r\n", err: errSlowPath},
		{name: "too many headers", in: "GET / HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X: y\r\n", maxH1Headers) + "\r\n", err: errSlowPath},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h reqHead
			ok, err := parseReqHead([]byte(tc.in), &h)
			if err != tc.err || ok != tc.ok {
				t.Fatalf("ok %v err %v, want %v %v", ok, err, tc.ok, tc.err)
			}
			if tc.check != nil {
				tc.check(t, &h)
			}
		})
	}
}

func TestParseRespHead(t *testing.T) {
	cases := []struct {
		name, in, out string
		head          bool
		mode          bodyMode
		reuse         bool
		err           bool
	}{
		{name: "length", in: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5\r\nX-A: b\r\n\r\nhello",
			out: "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-A: b\r\n", mode: bodyLength, reuse: true},
		{name: "chunked", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			out: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n", mode: bodyChunked, reuse: true},
		{name: "close delimited", in: "HTTP/1.0 200 OK\r\nX: y\r\n\r\n", out: "HTTP/1.1 200 OK\r\nX: y\r\nTransfer-Encoding: chunked\r\n", mode: bodyUntilClose},
		{name: "1.0 keep-alive", in: "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n",
			out: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", mode: bodyLength, reuse: true},
		{name: "close", in: "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
			out: "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n", mode: bodyLength},
		{name: "head", in: "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n\r\n", head: true,
			out: "HTTP/1.1 200 OK\r\nContent-Length: 50\r\n", mode: bodyNone, reuse: true},
		{name: "204", in: "HTTP/1.1 204 No Content\r\n\r\n", out: "HTTP/1.1 204 No Content\r\n", mode: bodyNone, reuse: true},
		{name: "no reason", in: "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", out: "HTTP/1.1 200\r\nContent-Length: 0\r\n", mode: bodyLength, reuse: true},
		{name: "both framings", in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", err: true},
		{name: "gzip coding", in: "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", err: true},
		{name: "conflicting lengths", in: "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", err: true},
		{name: "not http", in: "SSH-2.0-x\r\n\r\n", err: true},
		{name: "bad status", in: "HTTP/1.1 2x0 OK\r\n\r\n", err: true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var h respHead
			out, ok, err := parseRespHead(nil, []byte(tc.in), &h, tc.head)
			if tc.err {
				if err == nil {
					t.Fatalf("no error; head %q", out)
				}
				return
			}
			if err != nil || !ok {
				t.Fatalf("ok %v err %v", ok, err)
			}
			if string(out) != tc.out || h.mode != tc.mode || h.reuse != tc.reuse {
				t.Fatalf("head %q mode %d reuse %v, want %q %d %v", out, h.mode, h.reuse, tc.out, tc.mode, tc.reuse)
			}
		})
	}
}

// FuzzParseReqHead: request heads are untrusted bytes from clients.
func FuzzParseReqHead(f *testing.F) {
	f.Add([]byte("GET /a?b=c HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"))
	f.Add([]byte("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"))
	f.Add([]byte("GET /./ HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h reqHead
		ok, err := parseReqHead(b, &h)
		if !ok || err != nil {
			return
		}
		if h.len > len(b) || !bytes.HasSuffix(b[:h.len], crlfcrlf) || len(h.host) == 0 || h.path[0] != '/' {
			t.Fatalf("accepted %q: len %d host %q path %q", b, h.len, h.host, h.path)
		}
		if !cleanPath(h.path) || h.contentLength < -1 {
			t.Fatalf("accepted %q", b)
		}
	})
}

// FuzzParseRespHead: response heads are untrusted bytes from upstreams.
func FuzzParseRespHead(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"), false)
	f.Add([]byte("HTTP/1.0 204 x\r\nTransfer-Encoding: chunked\r\n\r\n"), true)
	f.Fuzz(func(t *testing.T, b []byte, head bool) {
		var h respHead
		out, ok, err := parseRespHead(nil, b, &h, head)
		if !ok || err != nil {
			return
		}
		if !bytes.HasPrefix(out, []byte("HTTP/1.1 ")) || h.status < 100 || h.status > 999 || h.len > len(b) {
			t.Fatalf("accepted %q -> %q status %d", b, out, h.status)
		}
		if bytes.Contains(out, []byte("\r\n\r\n")) {
			t.Fatalf("head %q ends early", out)
		}
		if h.mode == bodyLength && h.length < 0 {
			t.Fatalf("length mode without a length: %q", b)
		}
	})
}

package dataplane

import (
	"bytes"
	"errors"
)

// This file holds the HTTP/1.1 message parsers of the event-loop engine
// (h1loop_linux.go). They are strict on purpose: anything beyond the
// common shape of a request (absolute-form targets, percent-encoded or
// dot-segment paths, chunked or expect-continue request bodies, upgrades,
// obsolete line folding, HTTP/1.0, bare LF line ends, more than
// maxH1Headers header lines) makes parseReqHead answer errSlowPath, and
// the connection is handed to the fasthttp engine, which has served those
// all along. What the fast path accepts it forwards byte for byte apart
// from the hop-by-hop and X-Forwarded-* headers, as nginx does.

// maxH1Headers bounds the header lines of a request on the fast path.
const maxH1Headers = 64

var (
	// errSlowPath: the request is valid HTTP but needs the fasthttp engine.
	errSlowPath = errors.New("dataplane: request needs the full HTTP/1.1 engine")
	// errBadResponse: the upstream's response head is not HTTP/1.x.
	errBadResponse = errors.New("dataplane: malformed upstream response")
)

// h1Header is one header line: name and value (without surrounding
// whitespace), slices of the connection's read buffer.
type h1Header struct{ name, value []byte }

// reqHead is a parsed request head; its slices point into the buffer
// parseReqHead was given.
type reqHead struct {
	method, target, path, query []byte
	hdrs                        [maxH1Headers]h1Header
	n                           int
	host                        []byte
	contentLength               int64 // -1: none
	close                       bool  // Connection: close
	xffCount                    int
	hasXFProto, hasXFHost       bool
	hasXFPort                   bool
	cookie                      []byte
	len                         int // bytes of the head, CRLFCRLF included
}

// parseReqHead parses the request head at the start of b. It returns
// (false, nil) when b does not hold a whole head yet, errSlowPath when the
// request is valid for the fasthttp engine but not for this parser.
func parseReqHead(b []byte, h *reqHead) (bool, error) {
	*h = reqHead{contentLength: -1}
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		// A bare LF anywhere means the client does not end lines with CRLF.
		if i := bytes.IndexByte(b, '\n'); i >= 0 && (i == 0 || b[i-1] != '\r') {
			return false, errSlowPath
		}
		return false, nil
	}
	h.len = end + 4
	head := b[:end+2] // each line with its CRLF
	eol := bytes.Index(head, crlf)
	if !h.parseRequestLine(head[:eol]) {
		return false, errSlowPath
	}
	rest := head[eol+2:]
	for len(rest) > 0 {
		eol = bytes.Index(rest, crlf)
		line := rest[:eol]
		rest = rest[eol+2:]
		if h.n == maxH1Headers || !h.addHeader(line) {
			return false, errSlowPath
		}
	}
	if len(h.host) == 0 {
		return false, errSlowPath
	}
	return true, nil
}

var (
	crlf     = []byte("\r\n")
	crlfcrlf = []byte("\r\n\r\n")
)

func (h *reqHead) parseRequestLine(l []byte) bool {
	sp := bytes.IndexByte(l, ' ')
	if sp <= 0 {
		return false
	}
	h.method = l[:sp]
	for _, c := range h.method {
		if c < 'A' || c > 'Z' {
			return false
		}
	}
	if string(h.method) == "CONNECT" {
		return false
	}
	l = l[sp+1:]
	sp = bytes.IndexByte(l, ' ')
	if sp <= 0 || string(l[sp+1:]) != "HTTP/1.1" {
		return false
	}
	h.target = l[:sp]
	if h.target[0] != '/' {
		return false
	}
	h.path = h.target
	if q := bytes.IndexByte(h.target, '?'); q >= 0 {
		h.path, h.query = h.target[:q], h.target[q+1:]
	}
	return cleanPath(h.path) && cleanQuery(h.query)
}

// cleanPath reports whether p is already what nginx's $uri would be: no
// percent-encoding, no empty, "." or ".." segments, only unreserved and
// sub-delim characters.
func cleanPath(p []byte) bool {
	for i, c := range p {
		if !pathChar[c] {
			return false
		}
		if c == '/' && i+1 < len(p) {
			switch p[i+1] {
			case '/':
				return false
			case '.':
				rest := p[i+2:]
				if len(rest) == 0 || rest[0] == '/' || rest[0] == '.' && (len(rest) == 1 || rest[1] == '/') {
					return false
				}
			}
		}
	}
	return true
}

// cleanQuery reports whether q holds only printable ASCII and no fragment.
func cleanQuery(q []byte) bool {
	for _, c := range q {
		if c <= ' ' || c >= 0x7f || c == '#' {
			return false
		}
	}
	return true
}

// pathChar and tokenChar are the bytes allowed in a path the fast path
// takes as is (RFC 3986 pchar without '%', and '/') and in a header name
// (RFC 9110 token).
var (
	pathChar  = alnumAnd("-._~!$&'()*+,;=:@/")
	tokenChar = alnumAnd("!#$%&'*+-.^_`|~")
)

// alnumAnd is a byte set of the ASCII letters and digits plus extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := range 256 {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}

// addHeader records one header line; false sends the request to the
// fasthttp engine.
func (h *reqHead) addHeader(line []byte) bool {
	colon := bytes.IndexByte(line, ':')
	if colon <= 0 {
		return false // includes obs-fold continuation lines
	}
	name := line[:colon]
	for _, c := range name {
		if !tokenChar[c] {
			return false
		}
	}
	value := trimOWS(line[colon+1:])
	for _, c := range value {
		if c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	switch {
	case equalFoldASCII(name, "Host"):
		if h.host != nil || len(value) == 0 {
			return false
		}
		h.host = value
	case equalFoldASCII(name, "Content-Length"):
		n, ok := parseLength(value)
		if h.contentLength >= 0 || !ok {
			return false
		}
		h.contentLength = n
	case equalFoldASCII(name, "Connection"):
		switch {
		case equalFoldASCII(value, "close"):
			h.close = true
		case equalFoldASCII(value, "keep-alive"):
		default:
			return false // upgrades, or headers named hop-by-hop
		}
	case equalFoldASCII(name, "Transfer-Encoding"), equalFoldASCII(name, "Expect"),
		equalFoldASCII(name, "Upgrade"), equalFoldASCII(name, "Te"):
		return false
	case equalFoldASCII(name, "X-Forwarded-For"):
		h.xffCount++
	case equalFoldASCII(name, "X-Forwarded-Proto"):
		h.hasXFProto = h.hasXFProto || len(value) > 0
	case equalFoldASCII(name, "X-Forwarded-Host"):
		h.hasXFHost = h.hasXFHost || len(value) > 0
	case equalFoldASCII(name, "X-Forwarded-Port"):
		h.hasXFPort = h.hasXFPort || len(value) > 0
	case equalFoldASCII(name, "Cookie"):
		if h.cookie != nil {
			return false
		}
		h.cookie = value
	}
	h.hdrs[h.n] = h1Header{name, value}
	h.n++
	return true
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// header returns the first value of header name (lowercase, as
// expr.KindHeader names are), and whether it is present.
func (h *reqHead) header(name string) ([]byte, bool) {
	for i := 0; i < h.n; i++ {
		if equalFoldASCII(h.hdrs[i].name, name) {
			return h.hdrs[i].value, true
		}
	}
	return nil, false
}

// isReqHop reports whether a request header is not forwarded as is: the
// hop-by-hop ones, and those buildRequest writes itself.
func isReqHop(name []byte) bool {
	switch len(name) {
	case 4:
		return equalFoldASCII(name, "Host")
	case 9:
		return equalFoldASCII(name, "X-Real-IP")
	case 15:
		return equalFoldASCII(name, "X-Forwarded-For")
	}
	return isHopHeader(name)
}

// respHead is what the proxy needs from an upstream response head.
type respHead struct {
	status  int
	mode    bodyMode
	length  int64
	reuse   bool // the upstream keeps the connection open
	hasDate bool
	len     int
}

// parseRespHead parses the response head at the start of b and appends
// the head to send to the client to dst (status line as HTTP/1.1,
// hop-by-hop headers dropped). head says whether the request was HEAD.
// It returns ok=false when b does not hold the whole head yet.
func parseRespHead(dst, b []byte, h *respHead, head bool) (out []byte, ok bool, err error) {
	*h = respHead{length: -1}
	end := bytes.Index(b, crlfcrlf)
	if end < 0 {
		return dst, false, nil
	}
	h.len = end + 4
	lines := b[:end+2]
	eol := bytes.Index(lines, crlf)
	sl := lines[:eol]
	// HTTP/1.x SP 3DIGIT [SP reason]
	if len(sl) < 12 || string(sl[:7]) != "HTTP/1." || (sl[7] != '0' && sl[7] != '1') || sl[8] != ' ' {
		return dst, false, errBadResponse
	}
	minor1 := sl[7] == '1'
	st := sl[9:12]
	for _, c := range st {
		if c < '0' || c > '9' {
			return dst, false, errBadResponse
		}
	}
	if len(sl) > 12 && sl[12] != ' ' {
		return dst, false, errBadResponse
	}
	h.status = int(st[0]-'0')*100 + int(st[1]-'0')*10 + int(st[2]-'0')
	if h.status < 100 {
		return dst, false, errBadResponse
	}
	dst = append(dst, "HTTP/1.1"...)
	dst = append(dst, sl[8:]...)
	dst = append(dst, crlf...)
	h.reuse = minor1
	chunked := false
	rest := lines[eol+2:]
	for len(rest) > 0 {
		eol = bytes.Index(rest, crlf)
		line := rest[:eol]
		rest = rest[eol+2:]
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 || line[0] == ' ' || line[0] == '\t' {
			return dst, false, errBadResponse
		}
		name, value := line[:colon], trimOWS(line[colon+1:])
		switch {
		case equalFoldASCII(name, "Content-Length"):
			n, ok := parseLength(value)
			if !ok || h.length >= 0 && h.length != n {
				return dst, false, errBadResponse
			}
			h.length = n
		case equalFoldASCII(name, "Transfer-Encoding"):
			if !equalFoldASCII(value, "chunked") {
				return dst, false, errBadResponse // other codings: the fasthttp engine's business
			}
			chunked = true
			continue
		case equalFoldASCII(name, "Connection"):
			if containsFold(value, "close") {
				h.reuse = false
			} else if !minor1 && equalFoldASCII(value, "keep-alive") {
				h.reuse = true
			}
			continue
		case equalFoldASCII(name, "Date"):
			h.hasDate = true
		}
		if isHopHeader(name) {
			continue
		}
		dst = append(dst, line...)
		dst = append(dst, crlf...)
	}
	if chunked && h.length >= 0 {
		return dst, false, errBadResponse // both framings: refuse, as nginx does
	}
	switch {
	case head || h.status < 200 || h.status == 204 || h.status == 304:
		h.mode = bodyNone
	case chunked:
		h.mode = bodyChunked
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case h.length >= 0:
		h.mode = bodyLength
	default:
		// The client gets it chunked and keeps its connection (nginx's
		// chunked_transfer_encoding); the upstream's is done with.
		h.mode, h.reuse = bodyUntilClose, false
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	}
	return dst, true, nil
}

// containsFold reports whether b contains the lowercase ASCII word s in
// any case.
func containsFold(b []byte, s string) bool {
	for i := 0; i+len(s) <= len(b); i++ {
		if equalFoldASCII(b[i:i+len(s)], s) {
			return true
		}
	}
	return false
}

func parseLength(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

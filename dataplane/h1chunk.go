package dataplane

import "errors"

// This file is the package's one reader of the chunked transfer coding
// (RFC 9112 7.1). Both HTTP/1.1 engines read upstream response bodies
// with it: the event loop (h1exchange_linux.go) relays a chunked body
// byte for byte and only needs to find its end, the fasthttp engine's
// upstreamBody (h1body.go) de-chunks it. One grammar for both means a
// body one engine takes the other takes too, to the same byte.
//
// It is strict: a chunk-size is 1 to 15 hex digits, then optional
// spaces or tabs, then chunk extensions after ';' (not parsed, but with
// no CR or LF in them), then CRLF; chunk data is followed by CRLF; the
// trailer section's lines end with CRLF. A bare LF or CR, a missing
// digit, a size of 2^60 or more, a line longer than maxChunkLine or
// more than maxTrailerLines trailer lines is errBadChunk, found at the
// offending byte, without buffering: lines are scanned as they arrive.

// errBadChunk is returned for an upstream body whose chunked encoding is
// malformed.
var errBadChunk = errors.New("dataplane: malformed chunked encoding from upstream")

const (
	// maxChunkLine bounds a chunk-size line and each trailer line, CRLF
	// included: the fasthttp client's read buffer, the bound those lines
	// had when upstreamBody read them whole.
	maxChunkLine = 4096
	// maxTrailerLines bounds the trailer section, its empty last line
	// included.
	maxTrailerLines = 64
	// maxChunkDigits bounds a chunk-size: 16^15 = 2^60, no body is that
	// large.
	maxChunkDigits = 15
)

// chunkStep is where a chunkScanner is in the body.
type chunkStep uint8

const (
	chSize   chunkStep = iota // chunk-size hex digits
	chSizeWS                  // whitespace after the chunk-size
	chLine                    // chunk extensions or a trailer line, up to CR
	chLineLF                  // LF ending a chunk-size or trailer line
	chData                    // chunk data
	chDataCR                  // CR after chunk data
	chDataLF                  // LF after chunk data
	chDone                    // the body ended
)

// chunkScanner follows a chunked body as its bytes arrive, in pieces of
// any size. Its zero value is at the start of a body. The caller takes
// the chunk data itself (dataLeft, took) and gives the rest to frame;
// feed does both for a caller that only needs the end of the body.
type chunkScanner struct {
	st chunkStep
	// size is the chunk-size read so far (chSize to chLineLF), then the
	// chunk data left (chData).
	size    int64
	line    int  // bytes of the current chunk-size or trailer line so far
	trailer bool // the last chunk was read: lines are trailer lines
	lines   int  // trailer lines read
}

// done reports whether the end of the body was reached.
func (s *chunkScanner) done() bool { return s.st == chDone }

// dataLeft returns how many bytes of chunk data come next: 0 unless the
// scanner is in a chunk's data.
func (s *chunkScanner) dataLeft() int64 {
	if s.st != chData {
		return 0
	}
	return s.size
}

// took records that n bytes of chunk data were taken, n <= dataLeft().
func (s *chunkScanner) took(n int) {
	s.size -= int64(n)
	if s.size == 0 {
		s.st = chDataCR
	}
}

// frame consumes the framing at the start of b: the CRLF after a
// chunk's data, chunk-size lines, the trailer section. It stops at the
// first data byte of a chunk (dataLeft() > 0), at the end of the body
// (done()) or at the end of b, and returns how many bytes it consumed;
// on malformed framing, the offset of the offending byte and
// errBadChunk.
func (s *chunkScanner) frame(b []byte) (int, error) {
	for i, c := range b {
		switch s.st {
		case chData, chDone:
			return i, nil
		case chDataCR:
			if c != '\r' {
				return i, errBadChunk
			}
			s.st = chDataLF
			continue
		case chDataLF:
			if c != '\n' {
				return i, errBadChunk
			}
			s.st, s.line = chSize, 0
			continue
		}
		// c belongs to a chunk-size line or a trailer line.
		if s.line++; s.line > maxChunkLine {
			return i, errBadChunk
		}
		switch s.st {
		case chSize:
			if d, ok := unhex(c); ok {
				if s.line > maxChunkDigits {
					return i, errBadChunk
				}
				s.size = s.size<<4 | int64(d)
				continue
			}
			if s.line == 1 {
				return i, errBadChunk // no digit
			}
			fallthrough
		case chSizeWS:
			switch c {
			case ' ', '\t':
				s.st = chSizeWS
			case ';':
				s.st = chLine
			case '\r':
				s.st = chLineLF
			default:
				return i, errBadChunk
			}
		case chLine:
			switch c {
			case '\r':
				s.st = chLineLF
			case '\n':
				return i, errBadChunk
			}
		case chLineLF:
			if c != '\n' {
				return i, errBadChunk
			}
			switch {
			case !s.trailer && s.size > 0: // a chunk-size line
				s.st = chData
			case !s.trailer: // the last chunk's
				s.st, s.trailer = chLine, true
			case s.line == 2: // the empty line ending the trailer section
				s.st = chDone
				return i + 1, nil
			default:
				if s.lines++; s.lines == maxTrailerLines {
					return i, errBadChunk // no room left for the empty line
				}
				s.st = chLine
			}
			s.line = 0
		}
	}
	return len(b), nil
}

// feed consumes b, data and framing alike, and returns how many bytes
// belong to the body; done reports that the body ended (at b[:n]).
func (s *chunkScanner) feed(b []byte) (n int, done bool, err error) {
	for n < len(b) && s.st != chDone {
		if k := s.dataLeft(); k > 0 {
			m := int(min(k, int64(len(b)-n)))
			s.took(m)
			n += m
			continue
		}
		m, err := s.frame(b[n:])
		n += m
		if err != nil {
			return n, false, err
		}
	}
	return n, s.st == chDone, nil
}

// unhex returns the value of the hex digit c.
func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

package dataplane

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

// errBadChunk is returned for an upstream body whose chunked encoding is
// malformed.
var errBadChunk = errors.New("dataplane: malformed chunked encoding from upstream")

// maxTrailerLines bounds the trailer section of a chunked upstream body.
const maxTrailerLines = 64

// bodyMode is how the end of an upstream response body is found.
type bodyMode uint8

const (
	bodyLength     bodyMode = iota // Content-Length
	bodyChunked                    // Transfer-Encoding: chunked
	bodyUntilClose                 // neither: the upstream closes the connection
	bodyNone                       // HEAD, 1xx, 204, 304 (the event loops' parseRespHead)
)

// upstreamBody is the body of an upstream HTTP/1.1 response, read from
// the node connection as the client takes it (fasthttp.Response's body
// stream, see poolTransport). Each read that may block first extends the
// connection's read deadline by the pool's read timeout, so a long
// download or event stream is bounded by its pauses, not its length
// (nginx's proxy_read_timeout). A chunked body is de-chunked; the server
// writing the response re-chunks it, one chunk per read, flushed.
//
// CloseWithError gives the connection back to the pool if the body was
// read to its end, and closes it otherwise. An upstreamBody is used by
// one goroutine at a time.
type upstreamBody struct {
	p      *hostPool
	hc     *fasthttp.HostClient
	cc     any // fasthttp's *clientConn (putConn)
	conn   net.Conn
	br     *bufio.Reader
	readTO time.Duration
	reuse  bool // the connection may carry another request after the body
	// client, if set, is the connection the body is written to: each
	// part read gives its write sendTO (cleared by CloseWithError).
	client net.Conn
	sendTO time.Duration
	mode   bodyMode
	// left is what remains of the body (bodyLength) or of the current
	// chunk (bodyChunked).
	left int64
	crlf bool  // the CRLF ending a chunk's data is still to be read
	done bool  // the body was read to its end
	err  error // sticky: io.EOF once done
}

var upstreamBodyPool = sync.Pool{New: func() any { return &upstreamBody{} }}

// acquireUpstreamBody returns a body of Content-Length cl (-1: chunked,
// -2: until close), to be started.
func acquireUpstreamBody(cl int) *upstreamBody {
	b := upstreamBodyPool.Get().(*upstreamBody)
	switch {
	case cl >= 0:
		b.mode, b.left = bodyLength, int64(cl)
	case cl == -1:
		b.mode = bodyChunked
	default:
		b.mode = bodyUntilClose
	}
	return b
}

// start attaches b to connection cc of p, whose buffered reader is br;
// reuse says whether the connection may be kept once b is read.
func (b *upstreamBody) start(p *hostPool, hc *fasthttp.HostClient, cc any, conn net.Conn, br *bufio.Reader, reuse bool) {
	b.p, b.hc, b.cc, b.conn, b.br, b.readTO, b.reuse = p, hc, cc, conn, br, hc.ReadTimeout, reuse
}

// Read implements io.Reader. It returns what is already buffered rather
// than wait to fill p, so slow streams are relayed as they arrive.
func (b *upstreamBody) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) && b.err == nil {
		if n > 0 && !b.ready() {
			break
		}
		m, err := b.read(p[n:])
		n += m
		if err != nil {
			b.err = err
			b.done = err == io.EOF
		}
	}
	if n > 0 {
		if b.client != nil {
			if err := b.client.SetWriteDeadline(time.Now().Add(b.sendTO)); err != nil {
				b.err = err
			}
		}
		return n, nil
	}
	return 0, b.err
}

// bodyBufSize is the copy buffer of WriteTo: larger than fasthttp's
// (4 KiB), so a large body takes an eighth of the reads and writes.
const bodyBufSize = 32 << 10

var bodyBufPool = sync.Pool{New: func() any { b := make([]byte, bodyBufSize); return &b }}

// WriteTo implements io.WriterTo; fasthttp copies a body of known length
// with it.
func (b *upstreamBody) WriteTo(w io.Writer) (int64, error) {
	bp := bodyBufPool.Get().(*[]byte)
	defer bodyBufPool.Put(bp)
	var total int64
	for {
		n, err := b.Read(*bp)
		if n > 0 {
			m, werr := w.Write((*bp)[:n])
			total += int64(m)
			if werr != nil {
				return total, werr
			}
		}
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
}

// ready reports whether the next read needs no more than what is
// buffered (a chunk's data, or its CRLF and the next chunk-size line).
func (b *upstreamBody) ready() bool {
	k := b.br.Buffered()
	if k == 0 {
		return false
	}
	if b.mode != bodyChunked || b.left > 0 {
		return true
	}
	buf, _ := b.br.Peek(k)
	if b.crlf {
		if k < 2 {
			return false
		}
		buf = buf[2:]
	}
	return bytes.IndexByte(buf, '\n') >= 0
}

// read reads once; it may return 0, nil (a chunk header was read).
func (b *upstreamBody) read(p []byte) (int, error) {
	if b.readTO > 0 && b.br.Buffered() == 0 {
		if err := b.conn.SetReadDeadline(time.Now().Add(b.readTO)); err != nil {
			return 0, err
		}
	}
	switch b.mode {
	case bodyUntilClose:
		return b.br.Read(p)
	case bodyLength:
		if b.left == 0 {
			return 0, io.EOF
		}
		return b.readData(p)
	}
	if b.left > 0 {
		return b.readData(p)
	}
	if b.crlf {
		if err := b.readCRLF(); err != nil {
			return 0, err
		}
		b.crlf = false
	}
	size, err := b.chunkHeader()
	if err != nil {
		return 0, err
	}
	if size == 0 {
		return 0, b.trailer()
	}
	b.left = size
	return 0, nil
}

// readData reads at most b.left bytes of body data.
func (b *upstreamBody) readData(p []byte) (int, error) {
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.br.Read(p)
	b.left -= int64(n)
	if err == io.EOF {
		return n, io.ErrUnexpectedEOF
	}
	if b.left == 0 {
		if b.mode == bodyLength {
			return n, io.EOF
		}
		b.crlf = true
	}
	return n, err
}

// readCRLF reads the CRLF ending a chunk's data.
func (b *upstreamBody) readCRLF() error {
	for _, want := range [2]byte{'\r', '\n'} {
		c, err := b.br.ReadByte()
		if err != nil {
			return unexpected(err)
		}
		if c != want {
			return errBadChunk
		}
	}
	return nil
}

// chunkHeader reads a chunk-size line and returns the size.
func (b *upstreamBody) chunkHeader() (int64, error) {
	line, err := b.br.ReadSlice('\n')
	if err != nil {
		if errors.Is(err, bufio.ErrBufferFull) {
			return 0, errBadChunk
		}
		return 0, unexpected(err)
	}
	return parseChunkSize(line)
}

// parseChunkSize parses a chunk-size line (RFC 9112 7.1): hex digits,
// optional whitespace and extensions, CRLF.
func parseChunkSize(line []byte) (int64, error) {
	var size int64
	i := 0
	for ; i < len(line); i++ {
		c := line[i]
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			goto rest
		}
		if i >= 15 { // 2^60: no body is that large
			return 0, errBadChunk
		}
		size = size<<4 | int64(d)
	}
rest:
	if i == 0 {
		return 0, errBadChunk
	}
	for ; i < len(line); i++ {
		switch line[i] {
		case ' ', '\t':
		case ';', '\r', '\n':
			return size, checkLineEnd(line[i:])
		default:
			return 0, errBadChunk
		}
	}
	return 0, errBadChunk
}

// checkLineEnd checks that rest (extensions included) ends with CRLF and
// holds no other CR or LF.
func checkLineEnd(rest []byte) error {
	n := len(rest)
	if n < 2 || rest[n-2] != '\r' || rest[n-1] != '\n' {
		return errBadChunk
	}
	for _, c := range rest[:n-2] {
		if c == '\r' || c == '\n' {
			return errBadChunk
		}
	}
	return nil
}

// trailer reads the trailer section after the last chunk, dropping it,
// and returns io.EOF when it ended well.
func (b *upstreamBody) trailer() error {
	for range maxTrailerLines {
		line, err := b.br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				return errBadChunk
			}
			return unexpected(err)
		}
		if len(line) == 2 && line[0] == '\r' || len(line) == 1 {
			return io.EOF
		}
	}
	return errBadChunk
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// CloseWithError implements fasthttp.ReadCloserWithError: fasthttp calls
// it once the response was written (or failed to be).
func (b *upstreamBody) CloseWithError(error) error {
	if b.p == nil {
		return nil
	}
	if b.client != nil {
		_ = b.client.SetWriteDeadline(time.Time{})
	}
	b.hc.ReleaseReader(b.br)
	b.p.release(b.hc, b.cc, poolConnOf(b.conn), b.reuse && b.done)
	*b = upstreamBody{}
	upstreamBodyPool.Put(b)
	return nil
}

var _ fasthttp.ReadCloserWithError = (*upstreamBody)(nil)

package dataplane

import (
	"bufio"
	"io"
	"net"
	"sync"
	"time"

	"github.com/valyala/fasthttp"
)

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
	left   int64        // what remains of the body (bodyLength)
	chunk  chunkScanner // where the body is (bodyChunked)
	done   bool         // the body was read to its end
	err    error        // sticky: io.EOF once done
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
		if n > 0 && b.br.Buffered() == 0 {
			break // the next read may block
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

// read reads once; it may return 0, nil (chunk framing was read).
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
		n, err := b.readData(p, b.left)
		b.left -= int64(n)
		if b.left == 0 && err == nil {
			err = io.EOF
		}
		return n, err
	}
	if k := b.chunk.dataLeft(); k > 0 {
		n, err := b.readData(p, k)
		b.chunk.took(n)
		return n, err
	}
	return 0, b.readFrame()
}

// readData reads at most left bytes of body data.
func (b *upstreamBody) readData(p []byte, left int64) (int, error) {
	if int64(len(p)) > left {
		p = p[:left]
	}
	n, err := b.br.Read(p)
	return n, unexpected(err)
}

// readFrame consumes the chunk framing that is buffered, first waiting
// for a byte if none is; io.EOF once the body ended.
func (b *upstreamBody) readFrame() error {
	if _, err := b.br.Peek(1); err != nil {
		return unexpected(err)
	}
	buf, err := b.br.Peek(b.br.Buffered())
	if err != nil {
		return err
	}
	n, ferr := b.chunk.frame(buf)
	if _, err := b.br.Discard(n); err != nil {
		return err
	}
	if ferr != nil {
		return ferr
	}
	if b.chunk.done() {
		return io.EOF
	}
	return nil
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

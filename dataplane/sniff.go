package dataplane

import (
	"bytes"
	"errors"
	"net"
	"strconv"
	"time"
)

// proto is the protocol a connection's first bytes reveal.
type proto int

const (
	protoOpaque proto = iota
	protoHTTP1
	protoH2
	protoTLS
)

func (p proto) String() string {
	switch p {
	case protoOpaque:
		return "opaque"
	case protoHTTP1:
		return "http/1.1"
	case protoH2:
		return "h2c"
	case protoTLS:
		return "tls"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// sniffResult is what sniffing learned.
type sniffResult struct {
	proto proto
	sni   string
	alpn  []string
}

// h2Preface is the HTTP/2 client connection preface.
var h2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// maxSniff bounds the bytes read while sniffing (a TLS record).
const maxSniff = 5 + 16384

// peekConn replays bytes read while sniffing before reading on.
//
// With lazyIdle set it also enforces an idle timeout cheaply: before a
// read it pushes the read deadline to now+1.5*lazyIdle only when less
// than lazyIdle is left, so a keep-alive connection pays a deadline update
// about every lazyIdle/2 instead of two per request, and a connection with
// no bytes for between lazyIdle and 1.5*lazyIdle is closed by the failing
// read. An explicit SetDeadline/SetReadDeadline (fasthttp does one before
// handing a WebSocket over) turns it off. Only one goroutine may read.
type peekConn struct {
	net.Conn
	buf      []byte
	lazyIdle time.Duration
	deadline time.Time // read deadline set by lazyIdle
}

func (c *peekConn) Read(p []byte) (int, error) {
	if len(c.buf) > 0 {
		n := copy(p, c.buf)
		c.buf = c.buf[n:]
		return n, nil
	}
	if c.lazyIdle > 0 {
		if now := time.Now(); c.deadline.Sub(now) < c.lazyIdle {
			c.deadline = now.Add(c.lazyIdle * 3 / 2)
			if err := c.Conn.SetReadDeadline(c.deadline); err != nil {
				return 0, err
			}
		}
	}
	return c.Conn.Read(p)
}

// SetDeadline implements net.Conn; it ends lazyIdle.
func (c *peekConn) SetDeadline(t time.Time) error {
	c.lazyIdle = 0
	return c.Conn.SetDeadline(t)
}

// SetReadDeadline implements net.Conn; it ends lazyIdle.
func (c *peekConn) SetReadDeadline(t time.Time) error {
	c.lazyIdle = 0
	return c.Conn.SetReadDeadline(t)
}

// sniff reads the first bytes of c (waiting at most timeout) and
// classifies them. The returned conn replays what was read.
func sniff(c net.Conn, timeout time.Duration) (*peekConn, sniffResult) {
	pc := &peekConn{Conn: c}
	buf := make([]byte, 0, 512)
	_ = c.SetReadDeadline(time.Now().Add(timeout))
	defer c.SetReadDeadline(time.Time{})
	res := sniffResult{}
	for {
		v, need := classify(buf)
		if !need {
			res.proto = v
			break
		}
		if len(buf) >= maxSniff {
			res.proto = protoOpaque
			break
		}
		if cap(buf)-len(buf) < 512 {
			nb := make([]byte, len(buf), min(2*cap(buf)+512, maxSniff+512))
			copy(nb, buf)
			buf = nb
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			// Timeout or EOF: whatever was not recognised is opaque.
			v, need := classify(buf)
			if need {
				v = protoOpaque
			}
			res.proto = v
			break
		}
	}
	if res.proto == protoTLS {
		if sni, alpn, err := parseClientHello(buf); err == nil {
			res.sni, res.alpn = sni, alpn
		}
	}
	pc.buf = buf
	return pc, res
}

// classify decides the protocol of b, or says more bytes are needed.
func classify(b []byte) (p proto, needMore bool) {
	if len(b) == 0 {
		return protoOpaque, true
	}
	if b[0] == 0x16 {
		if len(b) < 5 {
			return protoTLS, true
		}
		if b[1] != 3 {
			return protoOpaque, false
		}
		l := int(b[3])<<8 | int(b[4])
		if len(b) < 5+l && 5+l <= maxSniff {
			return protoTLS, true
		}
		return protoTLS, false
	}
	if n := min(len(b), len(h2Preface)); bytes.Equal(b[:n], h2Preface[:n]) {
		if n == len(h2Preface) {
			return protoH2, false
		}
		// "PRI " could still be... nothing else: wait for the preface.
		return protoH2, true
	}
	// An HTTP/1.x request line starts with a method token (upper-case
	// letters, as every registered method, WebDAV's included) and a space.
	for i, c := range b {
		switch {
		case c == ' ' && i > 0:
			return protoHTTP1, false
		case c >= 'A' && c <= 'Z' || c == '-' || c == '_':
			if i >= maxMethodLen {
				return protoOpaque, false
			}
		default:
			return protoOpaque, false
		}
	}
	return protoHTTP1, true
}

// maxMethodLen bounds the method token of an HTTP/1.x request line
// (the longest registered method, UPDATEREDIRECTREF, has 17 letters).
const maxMethodLen = 20

var errShortHello = errors.New("dataplane: malformed TLS ClientHello")

// parseClientHello extracts SNI and ALPN from a TLS record holding a
// ClientHello. It never panics on malformed input.
func parseClientHello(b []byte) (sni string, alpn []string, err error) {
	if len(b) < 5 || b[0] != 0x16 {
		return "", nil, errShortHello
	}
	rl := int(b[3])<<8 | int(b[4])
	b = b[5:]
	if len(b) < rl {
		return "", nil, errShortHello
	}
	b = b[:rl]
	if len(b) < 4 || b[0] != 1 {
		return "", nil, errShortHello
	}
	hl := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	b = b[4:]
	if len(b) < hl {
		return "", nil, errShortHello
	}
	b = b[:hl]
	// version(2) random(32)
	if len(b) < 34 {
		return "", nil, errShortHello
	}
	b = b[34:]
	skip := func(lenBytes int) bool {
		if len(b) < lenBytes {
			return false
		}
		n := 0
		for i := 0; i < lenBytes; i++ {
			n = n<<8 | int(b[i])
		}
		b = b[lenBytes:]
		if len(b) < n {
			return false
		}
		b = b[n:]
		return true
	}
	if !skip(1) || !skip(2) || !skip(1) { // session id, cipher suites, compression
		return "", nil, errShortHello
	}
	if len(b) < 2 {
		return "", nil, nil // no extensions
	}
	el := int(b[0])<<8 | int(b[1])
	b = b[2:]
	if len(b) < el {
		return "", nil, errShortHello
	}
	b = b[:el]
	for len(b) >= 4 {
		typ := int(b[0])<<8 | int(b[1])
		l := int(b[2])<<8 | int(b[3])
		b = b[4:]
		if len(b) < l {
			return "", nil, errShortHello
		}
		ext := b[:l]
		b = b[l:]
		switch typ {
		case 0: // server_name
			if len(ext) < 2 {
				return "", nil, errShortHello
			}
			ext = ext[2:]
			for len(ext) >= 3 {
				nt := ext[0]
				nl := int(ext[1])<<8 | int(ext[2])
				ext = ext[3:]
				if len(ext) < nl {
					return "", nil, errShortHello
				}
				if nt == 0 {
					sni = string(ext[:nl])
				}
				ext = ext[nl:]
			}
		case 16: // ALPN
			if len(ext) < 2 {
				return "", nil, errShortHello
			}
			ext = ext[2:]
			for len(ext) >= 1 {
				pl := int(ext[0])
				ext = ext[1:]
				if len(ext) < pl {
					return "", nil, errShortHello
				}
				alpn = append(alpn, string(ext[:pl]))
				ext = ext[pl:]
			}
		}
	}
	return sni, alpn, nil
}

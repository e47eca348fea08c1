package dataplane

import (
	"bytes"

	"golang.org/x/net/http2/hpack"
)

// h2Encoder writes HPACK header blocks (RFC 7541) from the static table
// and literals only. It never adds to the dynamic table, so it has no
// state: x/net's hpack.Encoder searches its static and dynamic tables
// (maps) for every field and was a seventh of the HTTP/2 worker's CPU.
// The price is bytes on the wire: a repeated field costs its literal
// value (a gRPC request block ~100 bytes instead of ~20), which is cheap
// next to the syscalls of a request on the links a sidecar uses. Values
// are not Huffman-coded, for the same reason. The peer's decoder needs no
// table size update, and the peer's SETTINGS_HEADER_TABLE_SIZE does not
// concern it: nothing ever refers to a dynamic table.
type h2Encoder struct {
	w *bytes.Buffer
}

func newH2Encoder(w *bytes.Buffer) *h2Encoder { return &h2Encoder{w: w} }

// WriteField appends f to the block, as hpack.Encoder.WriteField.
func (e *h2Encoder) WriteField(f hpack.HeaderField) error {
	if !f.Sensitive {
		if i := h2StaticPair(f.Name, f.Value); i != 0 {
			e.int(0x80, 7, uint64(i)) // indexed field
			return nil
		}
	}
	first := byte(0x00) // literal without indexing
	if f.Sensitive {
		first = 0x10 // never indexed
	}
	if i := h2StaticName(f.Name); i != 0 {
		e.int(first, 4, uint64(i))
	} else {
		e.w.WriteByte(first)
		e.str(f.Name)
	}
	e.str(f.Value)
	return nil
}

// int appends an integer with an n-bit prefix (RFC 7541 §5.1) to the
// first byte's high bits.
func (e *h2Encoder) int(first byte, n uint, v uint64) {
	max := uint64(1)<<n - 1
	if v < max {
		e.w.WriteByte(first | byte(v))
		return
	}
	e.w.WriteByte(first | byte(max))
	v -= max
	for v >= 128 {
		e.w.WriteByte(byte(v%128) | 0x80)
		v /= 128
	}
	e.w.WriteByte(byte(v))
}

// str appends a string literal, not Huffman-coded (§5.2).
func (e *h2Encoder) str(s string) {
	e.int(0, 7, uint64(len(s)))
	e.w.WriteString(s)
}

// h2StaticPair is the static table index of a name and value both in it
// (Appendix A), or 0.
func h2StaticPair(name, value string) int {
	switch name {
	case ":method":
		switch value {
		case "GET":
			return 2
		case "POST":
			return 3
		}
	case ":path":
		switch value {
		case "/":
			return 4
		case "/index.html":
			return 5
		}
	case ":scheme":
		switch value {
		case "http":
			return 6
		case "https":
			return 7
		}
	case ":status":
		switch value {
		case "200":
			return 8
		case "204":
			return 9
		case "206":
			return 10
		case "304":
			return 11
		case "400":
			return 12
		case "404":
			return 13
		case "500":
			return 14
		}
	case "accept-encoding":
		if value == "gzip, deflate" {
			return 16
		}
	}
	return 0
}

// h2StaticName is the static table index of the first entry named name,
// or 0.
func h2StaticName(name string) int {
	switch name {
	case ":authority":
		return 1
	case ":method":
		return 2
	case ":path":
		return 4
	case ":scheme":
		return 6
	case ":status":
		return 8
	case "accept-charset":
		return 15
	case "accept-encoding":
		return 16
	case "accept-language":
		return 17
	case "accept-ranges":
		return 18
	case "accept":
		return 19
	case "access-control-allow-origin":
		return 20
	case "age":
		return 21
	case "allow":
		return 22
	case "authorization":
		return 23
	case "cache-control":
		return 24
	case "content-disposition":
		return 25
	case "content-encoding":
		return 26
	case "content-language":
		return 27
	case "content-length":
		return 28
	case "content-location":
		return 29
	case "content-range":
		return 30
	case "content-type":
		return 31
	case "cookie":
		return 32
	case "date":
		return 33
	case "etag":
		return 34
	case "expect":
		return 35
	case "expires":
		return 36
	case "from":
		return 37
	case "host":
		return 38
	case "if-match":
		return 39
	case "if-modified-since":
		return 40
	case "if-none-match":
		return 41
	case "if-range":
		return 42
	case "if-unmodified-since":
		return 43
	case "last-modified":
		return 44
	case "link":
		return 45
	case "location":
		return 46
	case "max-forwards":
		return 47
	case "proxy-authenticate":
		return 48
	case "proxy-authorization":
		return 49
	case "range":
		return 50
	case "referer":
		return 51
	case "refresh":
		return 52
	case "retry-after":
		return 53
	case "server":
		return 54
	case "set-cookie":
		return 55
	case "strict-transport-security":
		return 56
	case "transfer-encoding":
		return 57
	case "user-agent":
		return 58
	case "vary":
		return 59
	case "via":
		return 60
	case "www-authenticate":
		return 61
	}
	return 0
}

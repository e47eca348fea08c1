package dataplane

import (
	"bytes"
	"strings"

	"golang.org/x/net/http2/hpack"
)

// h2Encoder writes HPACK header blocks (RFC 7541). x/net's hpack.Encoder
// searches its static and dynamic tables (two maps) for every field and
// was a seventh of the HTTP/2 worker's CPU; this one finds a field's
// static entry with a switch and remembers, per field name, the last
// value it added to the dynamic table: a field repeated on a connection
// (":authority", ":path" of a gRPC method, "content-type", "te",
// "user-agent") is sent as one index, which also spares the peer's
// decoder a string allocation. Names seen are static ones (an array) or
// up to h2EncNames others (a short list); values that change with every
// message (content-length, grpc-timeout) and long ones are sent as
// literals without indexing, so they do not churn the table. Values are
// not Huffman-coded: CPU over bytes, on the links a sidecar uses.
//
// The dynamic table is tracked only by insertion numbers and sizes (the
// peer's decoder holds the strings): entry k of all those ever inserted
// is at index 61 + inserted - k + 1 while k > evicted.
type h2Encoder struct {
	w *bytes.Buffer

	maxSize  uint32   // table size in use (<= the peer's limit)
	size     uint32   // sum of the live entries' sizes
	inserted uint64   // entries ever inserted
	evicted  uint64   // entries ever evicted (oldest first)
	sizes    []uint32 // live entries' sizes, oldest first, from head
	head     int
	update   bool // a table size update must open the next block

	static [62]h2Indexed // last value indexed, by static name index
	names  []h2Named     // the same, for other names
}

// h2Indexed is the last value added to the table for a name, and its
// insertion number.
type h2Indexed struct {
	value string
	seq   uint64
}

type h2Named struct {
	name string
	h2Indexed
}

const (
	h2EncTableSize = 4096 // the protocol's initial SETTINGS_HEADER_TABLE_SIZE
	h2EncNames     = 32   // other names remembered per connection
	h2EncMaxValue  = 256  // longer values are not indexed
)

func newH2Encoder(w *bytes.Buffer) *h2Encoder {
	return &h2Encoder{w: w, maxSize: h2EncTableSize}
}

// SetMaxDynamicTableSizeLimit applies the peer's
// SETTINGS_HEADER_TABLE_SIZE: a smaller table evicts entries and is
// announced at the start of the next block (§4.2, §6.3). A larger one is
// not used (the table stays at most 4096 bytes).
func (e *h2Encoder) SetMaxDynamicTableSizeLimit(v uint32) {
	v = min(v, h2EncTableSize)
	if v == e.maxSize {
		return
	}
	e.maxSize = v
	e.evictTo(v)
	e.update = true
}

// WriteField appends f to the block, as hpack.Encoder.WriteField.
func (e *h2Encoder) WriteField(f hpack.HeaderField) error {
	if e.update && e.w.Len() == 0 { // the block starts: announce the size
		e.int(0x20, 5, uint64(e.maxSize))
		e.update = false
	}
	if !f.Sensitive {
		if i := h2StaticPair(f.Name, f.Value); i != 0 {
			e.int(0x80, 7, uint64(i)) // indexed field
			return nil
		}
	}
	si := h2StaticName(f.Name)
	var slot *h2Indexed
	if !f.Sensitive && e.maxSize > 0 && len(f.Value) <= h2EncMaxValue && h2Indexable(f.Name) {
		slot = e.slot(f.Name, si)
	}
	if slot != nil && slot.seq > e.evicted && slot.value == f.Value {
		e.int(0x80, 7, 61+e.inserted-slot.seq+1) // indexed, dynamic
		return nil
	}
	switch {
	case slot != nil:
		if si != 0 {
			e.int(0x40, 6, uint64(si)) // literal with incremental indexing
		} else {
			e.w.WriteByte(0x40)
			e.str(f.Name)
		}
		e.str(f.Value)
		if seq := e.insert(uint32(32 + len(f.Name) + len(f.Value))); seq != 0 {
			slot.value, slot.seq = strings.Clone(f.Value), seq
		}
		return nil
	case f.Sensitive:
		e.literal(0x10, si, f) // never indexed
	default:
		e.literal(0x00, si, f) // without indexing
	}
	return nil
}

// literal appends f as a literal of the kind of first (4-bit prefix).
func (e *h2Encoder) literal(first byte, si int, f hpack.HeaderField) {
	if si != 0 {
		e.int(first, 4, uint64(si))
	} else {
		e.w.WriteByte(first)
		e.str(f.Name)
	}
	e.str(f.Value)
}

// slot is where the last indexed value of name is kept (nil when no
// room is left for another name).
func (e *h2Encoder) slot(name string, si int) *h2Indexed {
	if si != 0 {
		return &e.static[si]
	}
	for i := range e.names {
		if e.names[i].name == name {
			return &e.names[i].h2Indexed
		}
	}
	if len(e.names) == h2EncNames {
		return nil
	}
	e.names = append(e.names, h2Named{name: strings.Clone(name)})
	return &e.names[len(e.names)-1].h2Indexed
}

// insert adds an entry of sz bytes, evicting the oldest ones to make room
// (§4.4), and returns its insertion number; 0 when it is larger than the
// table, which it then empties.
func (e *h2Encoder) insert(sz uint32) uint64 {
	if sz > e.maxSize {
		e.evictTo(0)
		return 0
	}
	e.evictTo(e.maxSize - sz)
	if e.head > 0 && e.head == len(e.sizes) {
		e.sizes, e.head = e.sizes[:0], 0
	} else if e.head > 64 && e.head*2 > len(e.sizes) {
		n := copy(e.sizes, e.sizes[e.head:])
		e.sizes, e.head = e.sizes[:n], 0
	}
	e.sizes = append(e.sizes, sz)
	e.size += sz
	e.inserted++
	return e.inserted
}

// evictTo evicts the oldest entries until the table holds at most max
// bytes.
func (e *h2Encoder) evictTo(max uint32) {
	for e.size > max && e.head < len(e.sizes) {
		e.size -= e.sizes[e.head]
		e.head++
		e.evicted++
	}
}

// h2Indexable reports whether values of name are worth a table entry:
// not those that change with every message.
func h2Indexable(name string) bool {
	switch name {
	case "content-length", "grpc-timeout", "etag", "last-modified", "set-cookie", "cookie", "authorization", "proxy-authorization":
		return false
	}
	return true
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

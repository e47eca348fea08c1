// Package requestid is APISIX's request-id plugin: it gives every request
// an id header (kept when the client sent one) and echoes it in the
// response.
package requestid

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"sync/atomic"

	"github.com/meshagent/meshagent/plugins"
)

// Name and Priority are APISIX's.
const (
	Name     = "request-id"
	Priority = 12015
)

// Config is the plugin's schema.
type Config struct {
	HeaderName        string          `json:"header_name,omitempty"`
	IncludeInResponse *bool           `json:"include_in_response,omitempty"`
	Algorithm         string          `json:"algorithm,omitempty"`
	RangeID           json.RawMessage `json:"range_id,omitempty"`
}

func init() {
	plugins.Register(plugins.Plugin{Name: Name, Priority: Priority, New: New})
}

type filter struct {
	header   string
	response bool
	gen      func() string
}

var counter atomic.Uint64

// New validates cfg and builds the filter.
func New(raw json.RawMessage, _ plugins.Builder) (any, error) {
	c := Config{HeaderName: "X-Request-Id", Algorithm: "uuid"}
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	f := &filter{header: c.HeaderName, response: c.IncludeInResponse == nil || *c.IncludeInResponse}
	switch c.Algorithm {
	case "uuid":
		f.gen = uuid4
	case "nanoid":
		f.gen = nanoid
	case "range_id":
		f.gen = func() string { return strconv.FormatUint(counter.Add(1), 10) }
	default:
		return nil, plugins.Invalid("algorithm", `must be one of "uuid", "nanoid", "range_id"`)
	}
	return f, nil
}

// Rewrite sets the id header unless the client sent one.
func (f *filter) Rewrite(c plugins.Ctx) plugins.Status {
	if len(c.Header(f.header)) == 0 {
		c.SetHeader(f.header, f.gen())
	}
	return plugins.Continue
}

// HeaderFilter echoes the id.
func (f *filter) HeaderFilter(c plugins.Ctx) plugins.Status {
	if f.response {
		if id := c.Header(f.header); len(id) > 0 {
			c.SetResponseHeader(f.header, string(id))
		}
	}
	return plugins.Continue
}

func uuid4() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], b[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], b[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], b[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], b[8:10])
	s[23] = '-'
	hex.Encode(s[24:], b[10:])
	return string(s[:])
}

const nanoAlphabet = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

func nanoid() string {
	var b [21]byte
	_, _ = rand.Read(b[:])
	for i := range b {
		b[i] = nanoAlphabet[b[i]&63]
	}
	return string(b[:])
}

var (
	_ plugins.Rewriter     = (*filter)(nil)
	_ plugins.HeaderFilter = (*filter)(nil)
)

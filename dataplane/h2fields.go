package dataplane

import (
	"errors"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Fields is a decoded header block: a HEADERS frame and its
// CONTINUATION frames, as http2.MetaHeadersFrame. It belongs to the
// connection's h2FieldReader and is valid until its next read: keep
// nothing of Fields (the strings may be kept).
type h2Fields struct {
	StreamID  uint32
	Fields    []hpack.HeaderField
	Truncated bool // over the header list limit; Fields are incomplete
	ended     bool
}

// StreamEnded reports whether the HEADERS frame had END_STREAM.
func (f *h2Fields) StreamEnded() bool { return f.ended }

// PseudoFields returns the leading pseudo-header fields.
func (f *h2Fields) PseudoFields() []hpack.HeaderField {
	for i, hf := range f.Fields {
		if !hf.IsPseudo() {
			return f.Fields[:i]
		}
	}
	return f.Fields
}

// RegularFields returns the fields after the pseudo-header fields.
func (f *h2Fields) RegularFields() []hpack.HeaderField {
	return f.Fields[len(f.PseudoFields()):]
}

// h2FieldReader reads frames from a Framer without ReadMetaHeaders and
// decodes header blocks itself, into one reused h2Fields: x/net's
// readMetaFrame allocates a frame, closures and a field slice per
// block. The checks are x/net's (http2/frame.go, readMetaFrame).
type h2FieldReader struct {
	fr  *http2.Framer
	dec *hpack.Decoder
	max uint32 // header list limit, as Framer.MaxHeaderListSize
	f   h2Fields

	// State of the block being decoded.
	headersRemain, trailersRemain uint32
	sawRegular                    bool
	invalid                       error
}

func newH2FieldReader(fr *http2.Framer, max uint32) *h2FieldReader {
	r := &h2FieldReader{fr: fr, max: max}
	r.dec = hpack.NewDecoder(4096, r.emit)
	r.dec.SetMaxStringLength(int(max))
	return r
}

// ReadFrame is Framer.ReadFrame, with header blocks as *h2Fields.
func (r *h2FieldReader) ReadFrame() (any, error) {
	f, err := r.fr.ReadFrame()
	if err != nil {
		return nil, err
	}
	hf, ok := f.(*http2.HeadersFrame)
	if !ok {
		return f, nil
	}
	return r.readBlock(hf)
}

var (
	errH2PseudoAfterRegular = errors.New("pseudo header field after regular")
	errH2BadFieldName       = errors.New("invalid header field name")
	errH2BadFieldValue      = errors.New("invalid header field value")
)

func (r *h2FieldReader) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		r.invalid = errH2BadFieldValue // the value may be sensitive: not in the error
	}
	if strings.HasPrefix(hf.Name, ":") {
		if r.sawRegular {
			r.invalid = errH2PseudoAfterRegular
		}
	} else {
		r.sawRegular = true
		if !validH2FieldName(hf.Name) {
			r.invalid = errH2BadFieldName
		}
	}
	if r.invalid != nil {
		r.dec.SetEmitEnabled(false)
		return
	}
	remain, size := &r.headersRemain, hf.Size()
	if hf.Name == "trailer" {
		n := strings.Count(hf.Value, ",") + 1
		remain, size = &r.trailersRemain, uint32(len(hf.Value)-n+1)+uint32(n)*hpack.HeaderField{}.Size()
	}
	if size > *remain {
		r.dec.SetEmitEnabled(false)
		r.f.Truncated = true
		r.headersRemain, r.trailersRemain = 0, 0
		return
	}
	*remain -= size
	r.f.Fields = append(r.f.Fields, hf)
}

// readBlock decodes the block starting with hf, reading its CONTINUATION
// frames (their order is checked by the Framer).
func (r *h2FieldReader) readBlock(hf *http2.HeadersFrame) (*h2Fields, error) {
	clear(r.f.Fields) // the strings of the last block go
	r.f = h2Fields{StreamID: hf.StreamID, Fields: r.f.Fields[:0], ended: hf.StreamEnded()}
	r.headersRemain, r.trailersRemain = r.max, r.max
	r.sawRegular, r.invalid = false, nil
	r.dec.SetEmitEnabled(true)
	frag, done := hf.HeaderBlockFragment(), hf.HeadersEnded()
	for {
		// Too large a fragment for what is left, or more after an invalid
		// field: the connection goes, as x/net's.
		if int64(len(frag)) > 2*int64(r.headersRemain+r.trailersRemain) || r.invalid != nil {
			return nil, http2.ConnectionError(http2.ErrCodeProtocol)
		}
		if _, err := r.dec.Write(frag); err != nil {
			return nil, http2.ConnectionError(http2.ErrCodeCompression)
		}
		if done {
			break
		}
		f, err := r.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		cf := f.(*http2.ContinuationFrame) // guaranteed by the Framer's order check
		frag, done = cf.HeaderBlockFragment(), cf.HeadersEnded()
	}
	if err := r.dec.Close(); err != nil {
		return nil, http2.ConnectionError(http2.ErrCodeCompression)
	}
	if r.invalid != nil {
		return nil, http2.StreamError{StreamID: r.f.StreamID, Code: http2.ErrCodeProtocol, Cause: r.invalid}
	}
	if err := checkH2Pseudos(r.f.PseudoFields()); err != nil {
		return nil, http2.StreamError{StreamID: r.f.StreamID, Code: http2.ErrCodeProtocol, Cause: err}
	}
	return &r.f, nil
}

// checkH2Pseudos refuses unknown, duplicate and mixed request/response
// pseudo-header fields.
func checkH2Pseudos(pf []hpack.HeaderField) error {
	var isRequest, isResponse bool
	for i, hf := range pf {
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			isRequest = true
		case ":status":
			isResponse = true
		default:
			return errors.New("invalid pseudo-header " + hf.Name)
		}
		for _, hf2 := range pf[:i] {
			if hf.Name == hf2.Name {
				return errors.New("duplicate pseudo-header " + hf.Name)
			}
		}
	}
	if isRequest && isResponse {
		return errors.New("mix of request and response pseudo headers")
	}
	return nil
}

// validH2FieldName is x/net's validWireHeaderFieldName: a token, no
// upper case.
func validH2FieldName(v string) bool {
	if len(v) == 0 {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !httpguts.IsTokenRune(rune(c)) || ('A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

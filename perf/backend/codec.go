package backend

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMessage reports bytes that are not a valid echo message.
var ErrMessage = errors.New("backend: malformed echo message")

// Message is the echo service's only message type. On the wire it is the
// protobuf encoding of `message Message { bytes data = 1; }`, so any
// protobuf tooling can read it, but perf needs no generated code.
type Message struct {
	Data []byte
}

// Codec is a grpc encoding.CodecV1-shaped codec for *Message. Its name is
// "proto" so the content-type is the standard application/grpc+proto; it is
// passed to grpc with ForceCodec/ForceServerCodec and never registered
// globally, so it does not replace the real proto codec in the process.
type Codec struct{}

// Name implements encoding.Codec.
func (Codec) Name() string { return "proto" }

// Marshal implements encoding.Codec; v must be *Message.
func (Codec) Marshal(v any) ([]byte, error) {
	m, ok := v.(*Message)
	if !ok {
		return nil, fmt.Errorf("backend: codec cannot marshal %T", v)
	}
	return AppendMessage(nil, m.Data), nil
}

// Unmarshal implements encoding.Codec; v must be *Message.
func (Codec) Unmarshal(b []byte, v any) error {
	m, ok := v.(*Message)
	if !ok {
		return fmt.Errorf("backend: codec cannot unmarshal into %T", v)
	}
	d, err := ParseMessage(b)
	if err != nil {
		return err
	}
	m.Data = d
	return nil
}

// AppendMessage appends the encoding of a Message holding data to b.
func AppendMessage(b, data []byte) []byte {
	if len(data) == 0 {
		return b
	}
	b = append(b, 0x0a) // field 1, wire type 2 (length-delimited)
	b = binary.AppendUvarint(b, uint64(len(data)))
	return append(b, data...)
}

// ParseMessage decodes a Message from untrusted bytes and returns its data
// (a sub-slice of b). Unknown fields are skipped as protobuf requires;
// truncated or malformed input is an ErrMessage.
func ParseMessage(b []byte) ([]byte, error) {
	var data []byte
	for len(b) > 0 {
		tag, n := binary.Uvarint(b)
		if n <= 0 {
			return nil, fmt.Errorf("%w: bad tag", ErrMessage)
		}
		b = b[n:]
		field, wire := tag>>3, tag&7
		if field == 0 {
			return nil, fmt.Errorf("%w: field number 0", ErrMessage)
		}
		switch wire {
		case 0: // varint
			_, n := binary.Uvarint(b)
			if n <= 0 {
				return nil, fmt.Errorf("%w: bad varint in field %d", ErrMessage, field)
			}
			b = b[n:]
		case 1: // fixed64
			if len(b) < 8 {
				return nil, fmt.Errorf("%w: short fixed64 in field %d", ErrMessage, field)
			}
			b = b[8:]
		case 2: // length-delimited
			l, n := binary.Uvarint(b)
			if n <= 0 || l > uint64(len(b)-n) {
				return nil, fmt.Errorf("%w: bad length in field %d", ErrMessage, field)
			}
			v := b[n : n+int(l)]
			b = b[n+int(l):]
			if field == 1 {
				data = v
			}
		case 5: // fixed32
			if len(b) < 4 {
				return nil, fmt.Errorf("%w: short fixed32 in field %d", ErrMessage, field)
			}
			b = b[4:]
		default:
			return nil, fmt.Errorf("%w: wire type %d in field %d", ErrMessage, wire, field)
		}
	}
	return data, nil
}

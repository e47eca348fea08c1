package etcdcompat

import (
	"fmt"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"

	"google.golang.org/protobuf/proto"
)

// codec is the gRPC codec for etcd's gogo-generated messages: it calls
// their generated Marshal/Unmarshal directly (as etcd's server does) and
// falls back to google.golang.org/protobuf for anything else (grpc
// health). The server's codec also sends cached Range replies' bytes as
// they are.
type codec struct{ rc *rangeCache }

type gogoMessage interface {
	Size() int
	MarshalTo([]byte) (int, error)
	Unmarshal([]byte) error
}

// Marshal encodes v.
func (c codec) Marshal(v any) ([]byte, error) {
	if r, ok := v.(*pb.RangeResponse); ok {
		if enc := c.rc.encoded(r); enc != nil {
			return enc, nil
		}
	}
	if m, ok := v.(gogoMessage); ok {
		b := make([]byte, m.Size())
		n, err := m.MarshalTo(b)
		if err != nil {
			return nil, fmt.Errorf("etcdcompat: marshal %T: %w", v, err)
		}
		return b[:n], nil
	}
	if m, ok := v.(proto.Message); ok {
		return proto.Marshal(m)
	}
	return nil, fmt.Errorf("etcdcompat: cannot marshal %T", v)
}

// Unmarshal decodes data into v.
func (codec) Unmarshal(data []byte, v any) error {
	if m, ok := v.(gogoMessage); ok {
		return m.Unmarshal(data)
	}
	if m, ok := v.(proto.Message); ok {
		return proto.Unmarshal(data, m)
	}
	return fmt.Errorf("etcdcompat: cannot unmarshal into %T", v)
}

// Name is the content subtype; "proto" keeps wire compatibility.
func (codec) Name() string { return "proto" }

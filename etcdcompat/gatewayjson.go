package etcdcompat

import (
	"encoding/base64"
	"strconv"

	gwruntime "github.com/grpc-ecosystem/grpc-gateway/runtime"
	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/mvccpb"
)

// gatewayMarshaler is the gateway's marshaler: etcd 3.5's
// JSONPb{OrigName: true} for everything (decoding requests included),
// except that Range replies, which carry whole APISIX directories, are
// encoded by appendRangeResponse into the very bytes JSONPb produces,
// without reflection, and cached with the reply when the reply is cached.
type gatewayMarshaler struct {
	*gwruntime.JSONPb
	rc *rangeCache // nil: no cache
}

// Marshal encodes v as JSONPb does.
func (m gatewayMarshaler) Marshal(v any) ([]byte, error) {
	if r, ok := v.(*pb.RangeResponse); ok && r != nil {
		if b := m.rc.json(r); b != nil {
			return b, nil
		}
		b := appendRangeResponse(make([]byte, 0, 256+r.Size()*3/2), r)
		m.rc.setJSON(r, b)
		return b, nil
	}
	return m.JSONPb.Marshal(v)
}

// appendRangeResponse appends r as JSONPb{OrigName: true} encodes it:
// fields in field-number order, zero values omitted, 64-bit integers as
// strings, bytes in padded standard base64.
func appendRangeResponse(b []byte, r *pb.RangeResponse) []byte {
	b = append(b, '{')
	first := true
	if r.Header != nil {
		b = appendField(b, &first, "header")
		b = appendHeader(b, r.Header)
	}
	if len(r.Kvs) > 0 {
		b = appendField(b, &first, "kvs")
		b = append(b, '[')
		for i, kv := range r.Kvs {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendKeyValue(b, kv)
		}
		b = append(b, ']')
	}
	if r.More {
		b = appendField(b, &first, "more")
		b = append(b, "true"...)
	}
	b = appendInt(b, &first, "count", r.Count)
	return append(b, '}')
}

func appendHeader(b []byte, h *pb.ResponseHeader) []byte {
	b = append(b, '{')
	first := true
	b = appendUint(b, &first, "cluster_id", h.ClusterId)
	b = appendUint(b, &first, "member_id", h.MemberId)
	b = appendInt(b, &first, "revision", h.Revision)
	b = appendUint(b, &first, "raft_term", h.RaftTerm)
	return append(b, '}')
}

func appendKeyValue(b []byte, kv *mvccpb.KeyValue) []byte {
	if kv == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	first := true
	b = appendBytes(b, &first, "key", kv.Key)
	b = appendInt(b, &first, "create_revision", kv.CreateRevision)
	b = appendInt(b, &first, "mod_revision", kv.ModRevision)
	b = appendInt(b, &first, "version", kv.Version)
	b = appendBytes(b, &first, "value", kv.Value)
	b = appendInt(b, &first, "lease", kv.Lease)
	return append(b, '}')
}

func appendField(b []byte, first *bool, name string) []byte {
	if !*first {
		b = append(b, ',')
	}
	*first = false
	b = append(b, '"')
	b = append(b, name...)
	return append(b, '"', ':')
}

func appendInt(b []byte, first *bool, name string, v int64) []byte {
	if v == 0 {
		return b
	}
	b = appendField(b, first, name)
	b = append(b, '"')
	b = strconv.AppendInt(b, v, 10)
	return append(b, '"')
}

func appendUint(b []byte, first *bool, name string, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = appendField(b, first, name)
	b = append(b, '"')
	b = strconv.AppendUint(b, v, 10)
	return append(b, '"')
}

func appendBytes(b []byte, first *bool, name string, v []byte) []byte {
	if len(v) == 0 {
		return b
	}
	b = appendField(b, first, name)
	b = append(b, '"')
	b = base64.StdEncoding.AppendEncode(b, v)
	return append(b, '"')
}

package e2e

import (
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"io"
	"net/http"
)

// remapPorts rewrites every SocketAddress port in m found in remap.
func remapPorts(m proto.Message, remap map[uint32]uint32) {
	var walk func(protoreflect.Message)
	walk = func(pm protoreflect.Message) {
		if sa, ok := pm.Interface().(*corev3.SocketAddress); ok {
			if p, ok := remap[sa.GetPortValue()]; ok {
				sa.PortSpecifier = &corev3.SocketAddress_PortValue{PortValue: p}
			}
			return
		}
		pm.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
			switch {
			case fd.IsList() && fd.Message() != nil:
				for i := 0; i < v.List().Len(); i++ {
					walk(v.List().Get(i).Message())
				}
			case fd.IsMap():
			case fd.Message() != nil:
				walk(v.Message())
			}
			return true
		})
	}
	walk(m.ProtoReflect())
}

func readAll(resp *http.Response) string {
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

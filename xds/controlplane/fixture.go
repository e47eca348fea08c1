package controlplane

import (
	"encoding/json"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	// Types that captured control-plane responses reference in Any fields.
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/rbac/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	_ "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
)

// LoadResponseJSON reads a captured discovery response in protojson form
// ({"resources": [...], "typeUrl": ..., "version" or "versionInfo": ...})
// and returns its type URL, version and decoded resources.
func LoadResponseJSON(path string) (typeURL, version string, msgs []proto.Message, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", "", nil, fmt.Errorf("controlplane: %w", err)
	}
	var dr struct {
		Resources   []json.RawMessage `json:"resources"`
		TypeURL     string            `json:"typeUrl"`
		Version     string            `json:"version"`
		VersionInfo string            `json:"versionInfo"`
	}
	if err := json.Unmarshal(b, &dr); err != nil {
		return "", "", nil, fmt.Errorf("controlplane: %s: %w", path, err)
	}
	if dr.Version == "" {
		dr.Version = dr.VersionInfo
	}
	for i, raw := range dr.Resources {
		var a anypb.Any
		if err := protojson.Unmarshal(raw, &a); err != nil {
			return "", "", nil, fmt.Errorf("controlplane: %s: resources[%d]: %w", path, i, err)
		}
		m, err := a.UnmarshalNew()
		if err != nil {
			return "", "", nil, fmt.Errorf("controlplane: %s: resources[%d]: %w", path, i, err)
		}
		msgs = append(msgs, m)
	}
	return dr.TypeURL, dr.Version, msgs, nil
}

// Add appends msgs (clusters, load assignments, listeners, route
// configurations, secrets) to r by their type.
func (r *Resources) Add(msgs ...proto.Message) error {
	for _, m := range msgs {
		switch v := m.(type) {
		case *Cluster:
			r.Clusters = append(r.Clusters, v)
		case *CLA:
			r.Endpoints = append(r.Endpoints, v)
		case *Listener:
			r.Listeners = append(r.Listeners, v)
		case *RouteConfiguration:
			r.Routes = append(r.Routes, v)
		case *Secret:
			r.Secrets = append(r.Secrets, v)
		default:
			return fmt.Errorf("controlplane: unsupported resource %T", m)
		}
	}
	return nil
}

package xds

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/structpb"
)

// Preset is a control-plane flavour whose node identity the client mimics.
type Preset int

// The presets.
const (
	// PresetNone: the node id, cluster and metadata are used as given.
	PresetNone Preset = iota
	// PresetIstio: istiod's sidecar identity.
	PresetIstio
	// PresetKuma: kuma-dp's identity.
	PresetKuma
)

// String is the preset name as given to --preset.
func (p Preset) String() string {
	switch p {
	case PresetNone:
		return "none"
	case PresetIstio:
		return "istio"
	case PresetKuma:
		return "kuma"
	}
	return "unknown"
}

// ParsePreset parses "", "none", "istio" or "kuma".
func ParsePreset(s string) (Preset, error) {
	switch s {
	case "", "none":
		return PresetNone, nil
	case "istio":
		return PresetIstio, nil
	case "kuma":
		return PresetKuma, nil
	}
	return 0, fmt.Errorf("xds: preset %q: must be istio, kuma or none", s)
}

// ErrNode is wrapped by node configuration errors.
var ErrNode = errors.New("xds: invalid node")

// NodeConfig describes the node identity sent to the control plane.
type NodeConfig struct {
	// Preset selects whose identity is mimicked; it fills what is left
	// empty below with that control plane's defaults.
	Preset Preset
	// ID is the node id. Istio default: sidecar~<IP>~<Pod>.<Namespace>~<Namespace>.svc.cluster.local;
	// Kuma default: <Mesh>.<Dataplane>.
	ID string
	// Cluster is the node cluster (Istio: <app>.<namespace>).
	Cluster string
	// Metadata is merged over the preset's metadata.
	Metadata map[string]any

	// Istio fields, sent as istio-agent does in the node metadata; empty
	// ones take the defaults in brackets.

	// IP is the pod IP (INSTANCE_IPS) [127.0.0.1].
	IP string
	// Pod is the pod name (NAME, POD_NAME, WORKLOAD_NAME) [meshagent].
	Pod string
	// Namespace is the pod's namespace (NAMESPACE) [default].
	Namespace string
	// IstioVersion is the ISTIO_VERSION claimed [1.28.0].
	IstioVersion string
	// ClusterID is the CLUSTER_ID [Kubernetes].
	ClusterID string
	// MeshID is the MESH_ID [cluster.local].
	MeshID string
	// ServiceAccount is the SERVICE_ACCOUNT [default].
	ServiceAccount string
	// Labels are the pod labels (LABELS); "app" also names the node
	// cluster when Cluster is empty.
	Labels map[string]string

	// Kuma fields.

	// Mesh is the mesh name [default]; the default node id is
	// <Mesh>.<Dataplane>.
	Mesh string
	// Dataplane is the Dataplane resource's name; required unless ID is set.
	Dataplane string
	// DataplaneResource is an inline Dataplane resource (YAML or JSON), sent
	// as kuma-dp does in metadata "dataplane.resource".
	DataplaneResource string
	// KumaVersion is the kuma-dp version claimed in metadata "version"
	// [2.14.3].
	KumaVersion string
}

// userAgent is sent as the node's user_agent_name.
const userAgent = "meshagent"

// envoyCompatVersion is the Envoy API version meshagent behaves like.
const envoyCompatVersion = "1.40.0"

// BuildNode returns the xDS node for cfg.
func BuildNode(cfg NodeConfig, version string) (*corev3.Node, error) {
	md := map[string]any{}
	n := &corev3.Node{
		Id:                   cfg.ID,
		Cluster:              cfg.Cluster,
		UserAgentName:        userAgent,
		UserAgentVersionType: &corev3.Node_UserAgentVersion{UserAgentVersion: version},
	}
	switch cfg.Preset {
	case PresetIstio:
		ns := or(cfg.Namespace, "default")
		pod := or(cfg.Pod, "meshagent")
		ip := or(cfg.IP, "127.0.0.1")
		if n.Id == "" {
			n.Id = fmt.Sprintf("sidecar~%s~%s.%s~%s.svc.cluster.local", ip, pod, ns, ns)
		}
		if n.Cluster == "" {
			app := pod
			if v := cfg.Labels["app"]; v != "" {
				app = v
			}
			n.Cluster = app + "." + ns
		}
		labels := map[string]any{}
		for k, v := range cfg.Labels {
			labels[k] = v
		}
		md["ISTIO_VERSION"] = or(cfg.IstioVersion, "1.28.0")
		md["CLUSTER_ID"] = or(cfg.ClusterID, "Kubernetes")
		md["NAMESPACE"] = ns
		md["NAME"] = pod
		md["POD_NAME"] = pod
		md["INSTANCE_IPS"] = ip
		md["MESH_ID"] = or(cfg.MeshID, "cluster.local")
		md["SERVICE_ACCOUNT"] = or(cfg.ServiceAccount, "default")
		md["WORKLOAD_NAME"] = pod
		md["INTERCEPTION_MODE"] = "REDIRECT"
		md["LABELS"] = labels
		md["ENVOY_STATUS_PORT"] = 15021.0
		md["ENVOY_PROMETHEUS_PORT"] = 15090.0
	case PresetKuma:
		mesh := or(cfg.Mesh, "default")
		if n.Id == "" {
			if cfg.Dataplane == "" {
				return nil, fmt.Errorf("%w: kuma preset: dataplane name (or node id) required", ErrNode)
			}
			n.Id = mesh + "." + cfg.Dataplane
		}
		md["version"] = map[string]any{
			"kumaDp": map[string]any{"version": or(cfg.KumaVersion, "2.14.3"), "gitTag": "unknown", "gitCommit": "unknown", "buildDate": "unknown"},
			"envoy":  map[string]any{"version": envoyCompatVersion, "build": userAgent + "/" + version, "kumaDpCompatible": true},
		}
		if cfg.DataplaneResource != "" {
			md["dataplane.resource"] = cfg.DataplaneResource
		}
	case PresetNone:
	default:
		return nil, fmt.Errorf("%w: preset %v", ErrNode, cfg.Preset)
	}
	for k, v := range cfg.Metadata {
		md[k] = v
	}
	if n.Id == "" {
		return nil, fmt.Errorf("%w: id: required", ErrNode)
	}
	if strings.ContainsAny(n.Id, " \t\n") {
		return nil, fmt.Errorf("%w: id %q: must not contain whitespace", ErrNode, n.Id)
	}
	// Round-trip through JSON so any JSON-shaped value is accepted.
	b, err := json.Marshal(md)
	if err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", ErrNode, err)
	}
	s := &structpb.Struct{}
	if err := s.UnmarshalJSON(b); err != nil {
		return nil, fmt.Errorf("%w: metadata: %w", ErrNode, err)
	}
	n.Metadata = s
	return n, nil
}

// or returns s, or def when s is empty.
func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

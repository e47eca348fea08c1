package mtls

import "strconv"

// AppProtocol is what a negotiated ALPN value means for the data plane.
type AppProtocol int

const (
	// AppSniff means the ALPN does not say (none, or a mesh marker such as
	// Kuma's "kuma" or Istio's "istio"): sniff the decrypted bytes.
	AppSniff AppProtocol = iota
	// AppHTTP1 is HTTP/1.x ("http/1.1", "istio-http/1.1", ...).
	AppHTTP1
	// AppH2 is HTTP/2 ("h2", "istio-h2").
	AppH2
)

// String returns the protocol's name.
func (p AppProtocol) String() string {
	switch p {
	case AppSniff:
		return "sniff"
	case AppHTTP1:
		return "http/1.1"
	case AppH2:
		return "h2"
	}
	return "AppProtocol(" + strconv.Itoa(int(p)) + ")"
}

// MeshALPN lists the ALPN values mesh peers send that a meshagent server
// accepts besides h2 and http/1.1, in preference order: Istio's istio-h2,
// istio-http/1.1, istio-http/1.0, istio, Kuma's kuma, and last Istio's
// istio-peer-exchange (chosen only when the client offers nothing else:
// meshagent does not speak Istio's TCP metadata-exchange prefix, and Istio
// clients offer "istio" beside it).
var MeshALPN = []string{"istio-h2", "istio-http/1.1", "istio-http/1.0", "istio", "kuma", "istio-peer-exchange"}

// ProtocolOf maps a negotiated ALPN value to how the data plane serves
// the decrypted stream.
func ProtocolOf(alpn string) AppProtocol {
	switch alpn {
	case "h2", "istio-h2":
		return AppH2
	case "http/1.1", "http/1.0", "istio-http/1.1", "istio-http/1.0":
		return AppHTTP1
	}
	return AppSniff
}

// serverALPN is the server's NextProtos: the configured list (default h2,
// http/1.1) followed by the mesh values not in it, so a mesh client's
// ALPN always finds a match (Go refuses a handshake with no overlap).
func serverALPN(configured []string) []string {
	out := append([]string(nil), configured...)
	if len(out) == 0 {
		out = []string{"h2", "http/1.1"}
	}
	for _, p := range append([]string{"h2", "http/1.1"}, MeshALPN...) {
		found := false
		for _, q := range out {
			if q == p {
				found = true
				break
			}
		}
		if !found {
			out = append(out, p)
		}
	}
	return out
}

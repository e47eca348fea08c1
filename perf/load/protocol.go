package load

import (
	"errors"
	"fmt"
	"time"
)

// ErrProtocol reports an unknown protocol name.
var ErrProtocol = errors.New("load: unknown protocol")

// Protocol is the kind of load a client generates.
type Protocol int

// Protocols.
const (
	// HTTP1 is HTTP/1.1 GET over keep-alive connections.
	HTTP1 Protocol = iota
	// H2 is HTTP/2 GET over cleartext prior-knowledge connections.
	H2
	// GRPC is gRPC unary calls of perf.Echo/Unary.
	GRPC
	// GRPCStream is one message round trip on a perf.Echo/Stream stream.
	GRPCStream
	// TCP is a payload round trip on a TCP echo connection.
	TCP
	// TCPBulk is one bulk transfer to the TCP sink, acknowledged.
	TCPBulk
)

var protocolNames = []string{"http1", "h2", "grpc", "grpc-stream", "tcp", "tcp-bulk"}

// String returns the protocol's flag name.
func (p Protocol) String() string {
	if p < 0 || int(p) >= len(protocolNames) {
		return fmt.Sprintf("protocol(%d)", int(p))
	}
	return protocolNames[p]
}

// ParseProtocol maps a flag name to a Protocol.
func ParseProtocol(s string) (Protocol, error) {
	for i, n := range protocolNames {
		if n == s {
			return Protocol(i), nil
		}
	}
	return 0, fmt.Errorf("%w %q (want one of %v)", ErrProtocol, s, protocolNames)
}

// ClientConfig says what each client sends where.
type ClientConfig struct {
	// Addr is host:port of the target.
	Addr string
	// Path is the HTTP path (default "/").
	Path string
	// Payload is the request payload size: the gRPC message, the TCP echo
	// round trip, or one TCP bulk transfer (defaults 64 B, 64 B, 1 MiB).
	Payload int
	// Timeout bounds each request (default 5 s).
	Timeout time.Duration
}

// NewFactory returns the client factory for protocol p.
func NewFactory(p Protocol, cfg ClientConfig) (Factory, error) {
	if cfg.Addr == "" {
		return nil, fmt.Errorf("%w: addr is empty", ErrOptions)
	}
	if cfg.Payload < 0 {
		return nil, fmt.Errorf("%w: payload %d: must be >= 0", ErrOptions, cfg.Payload)
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Payload == 0 {
		cfg.Payload = 64
		if p == TCPBulk {
			cfg.Payload = 1 << 20
		}
	}
	switch p {
	case HTTP1:
		return http1Factory{cfg}, nil
	case H2:
		return h2Factory{cfg}, nil
	case GRPC:
		return grpcFactory{cfg: cfg}, nil
	case GRPCStream:
		return grpcFactory{cfg: cfg, stream: true}, nil
	case TCP:
		return tcpFactory{cfg: cfg}, nil
	case TCPBulk:
		return tcpFactory{cfg: cfg, bulk: true}, nil
	}
	return nil, fmt.Errorf("%w: %v", ErrProtocol, p)
}

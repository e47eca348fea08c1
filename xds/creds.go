package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
)

// tokenCreds sends "authorization: Bearer <token>" read from a file, and
// re-reads the file when its size or modification time changes (Istio
// rotates its projected service-account token).
type tokenCreds struct {
	path   string
	secure bool

	mu    sync.Mutex
	mod   time.Time
	size  int64
	token string
}

// GetRequestMetadata implements credentials.PerRPCCredentials.
func (c *tokenCreds) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	fi, err := os.Stat(c.path)
	if err != nil {
		return nil, fmt.Errorf("xds: token file: %w", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.token == "" || !fi.ModTime().Equal(c.mod) || fi.Size() != c.size {
		b, err := os.ReadFile(c.path)
		if err != nil {
			return nil, fmt.Errorf("xds: token file: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if tok == "" {
			return nil, fmt.Errorf("xds: token file %s is empty", c.path)
		}
		c.token, c.mod, c.size = tok, fi.ModTime(), fi.Size()
	}
	return map[string]string{"authorization": "Bearer " + c.token}, nil
}

// RequireTransportSecurity refuses to send the token in clear text, except
// to a loopback address.
func (c *tokenCreds) RequireTransportSecurity() bool { return c.secure }

// isLoopback reports whether addr (host:port or host) names a loopback
// address or localhost.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		host = addr
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// dialOptions builds the transport credentials of the connection.
func dialOptions(o *Options) ([]grpc.DialOption, error) {
	var opts []grpc.DialOption
	secure := o.TLS || o.TLSCAFile != ""
	if secure {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.TLSServerName}
		if o.TLSCAFile != "" {
			pem, err := os.ReadFile(o.TLSCAFile)
			if err != nil {
				return nil, fmt.Errorf("%w: TLSCAFile: %w", ErrConfig, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("%w: TLSCAFile %s: no PEM certificate found", ErrConfig, o.TLSCAFile)
			}
			cfg.RootCAs = pool
		}
		opts = append(opts, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	} else {
		opts = append(opts, grpc.WithTransportCredentials(insecure.NewCredentials()))
	}
	// Detect a control plane that vanished without closing the connection.
	// Five minutes is grpc-go servers' default minimum ping interval: any
	// shorter would be answered with GOAWAY "too_many_pings".
	opts = append(opts, grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 5 * time.Minute, Timeout: 20 * time.Second}))
	if o.TokenFile != "" {
		if !secure && !isLoopback(o.Addr) {
			return nil, fmt.Errorf("%w: TokenFile: given for a plaintext connection to %s: use TLS (the token would travel in clear)", ErrConfig, o.Addr)
		}
		opts = append(opts, grpc.WithPerRPCCredentials(&tokenCreds{path: o.TokenFile, secure: secure}))
	}
	return opts, nil
}

package etcdcompat

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"fmt"
	"strings"
	"sync"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// authenticator implements etcd's "simple token" authentication for one
// configured user with every permission (etcd's root). With no user
// configured, authentication is disabled and every request is allowed.
type authenticator struct {
	user, password string
	ttl            time.Duration
	now            func() time.Time

	mu     sync.Mutex
	seq    uint64
	tokens map[string]time.Time // token -> expiry
}

func newAuthenticator(user, password string, ttl time.Duration) *authenticator {
	return &authenticator{user: user, password: password, ttl: ttl, now: time.Now, tokens: make(map[string]time.Time)}
}

func (a *authenticator) enabled() bool { return a.user != "" }

// authenticate checks the credentials and issues a token.
func (a *authenticator) authenticate(name, password string) (string, error) {
	if !a.enabled() {
		return "", rpctypes.ErrGRPCAuthNotEnabled
	}
	okUser := subtle.ConstantTimeCompare([]byte(name), []byte(a.user)) == 1
	okPass := subtle.ConstantTimeCompare([]byte(password), []byte(a.password)) == 1
	if !okUser || !okPass {
		return "", rpctypes.ErrGRPCAuthFailed
	}
	const letters = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", fmt.Errorf("etcdcompat: token: %w", err)
	}
	for i := range b {
		b[i] = letters[int(b[i])%len(letters)]
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	for t, exp := range a.tokens {
		if now.After(exp) {
			delete(a.tokens, t)
		}
	}
	a.seq++
	tok := fmt.Sprintf("%s.%d", b, a.seq)
	a.tokens[tok] = now.Add(a.ttl)
	return tok, nil
}

// tokenFromContext returns the token of an incoming request: clientv3
// sends it as "token", the HTTP gateway forwards the Authorization header
// as "authorization".
func tokenFromContext(ctx context.Context) (string, bool) {
	md, ok := metadata.FromIncomingContext(ctx)
	if !ok {
		return "", false
	}
	for _, k := range []string{rpctypes.TokenFieldNameGRPC, rpctypes.TokenFieldNameSwagger} {
		if v := md.Get(k); len(v) > 0 {
			return v[0], true
		}
	}
	return "", false
}

// verify checks the token of ctx, if any, and extends it. It reports
// whether a valid token was present; an invalid token is an error.
func (a *authenticator) verify(ctx context.Context) (bool, error) {
	tok, ok := tokenFromContext(ctx)
	if !ok {
		return false, nil
	}
	now := a.now()
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, found := a.tokens[tok]
	if !found || now.After(exp) {
		delete(a.tokens, tok)
		return false, rpctypes.ErrGRPCInvalidAuthToken
	}
	a.tokens[tok] = now.Add(a.ttl)
	return true, nil
}

// check enforces authentication for a request that needs a user (KV and
// watch): an invalid token or no token at all is refused with etcd's
// errors.
func (a *authenticator) check(ctx context.Context) error {
	if !a.enabled() {
		return nil
	}
	ok, err := a.verify(ctx)
	if err != nil {
		return err
	}
	if !ok {
		return rpctypes.ErrGRPCUserEmpty
	}
	return nil
}

// checkStream is check for a watch creation: etcd reports the failure as
// the watch's cancel reason, the text of the gRPC error.
func (a *authenticator) checkStream(ctx context.Context) error {
	return a.check(ctx)
}

// unaryInterceptor applies etcd's rules: KV requests and AuthStatus need
// a valid token; lease requests are refused only for an invalid token;
// Authenticate, Status and MemberList are always allowed.
func (a *authenticator) unaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	if a.enabled() {
		switch {
		case strings.HasPrefix(info.FullMethod, "/etcdserverpb.KV/"), info.FullMethod == "/etcdserverpb.Auth/AuthStatus":
			if err := a.check(ctx); err != nil {
				return nil, err
			}
		case strings.HasPrefix(info.FullMethod, "/etcdserverpb.Lease/"):
			if _, err := a.verify(ctx); err != nil {
				return nil, err
			}
		}
	}
	return h(ctx, req)
}

// authServer answers Authenticate and AuthStatus; user and role management
// answer Unimplemented (the one user is configured on the command line).
type authServer struct {
	pb.UnimplementedAuthServer
	s *Server
}

// Authenticate returns a token for the configured user, or etcd's
// "authentication is not enabled" when none is configured.
func (as *authServer) Authenticate(_ context.Context, r *pb.AuthenticateRequest) (*pb.AuthenticateResponse, error) {
	tok, err := as.s.auth.authenticate(r.Name, r.Password)
	if err != nil {
		return nil, err
	}
	return &pb.AuthenticateResponse{Header: as.s.hdr.fill(nil), Token: tok}, nil
}

// AuthStatus reports whether authentication is enabled.
func (as *authServer) AuthStatus(_ context.Context, _ *pb.AuthStatusRequest) (*pb.AuthStatusResponse, error) {
	var rev uint64
	if as.s.auth.enabled() {
		rev = 1
	}
	return &pb.AuthStatusResponse{Header: as.s.hdr.fill(nil), Enabled: as.s.auth.enabled(), AuthRevision: rev}, nil
}

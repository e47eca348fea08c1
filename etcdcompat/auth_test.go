package etcdcompat

import (
	"bufio"
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/metadata"
)

var tokenField = regexp.MustCompile(`"token":"[^"]+"`)

// TestDiffAuth compares authentication against an etcd whose root user
// has a password and auth enabled: HTTP and gRPC requests without a
// token, with a bad token, with a good one, wrong credentials, watches
// without a token, and the requests etcd serves without a user.
func TestDiffAuth(t *testing.T) {
	const user, password = "root", "s3cret"
	e, refURL, err := startEmbedded(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(e.Close)
	admin, err := clientv3.New(clientv3.Config{Endpoints: []string{refURL}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := admin.UserAdd(ctx, user, password); err != nil {
		t.Fatal(err)
	}
	_, _ = admin.RoleAdd(ctx, "root")
	if _, err := admin.UserGrantRole(ctx, user, "root"); err != nil {
		t.Fatal(err)
	}
	if _, err := admin.AuthEnable(ctx); err != nil {
		t.Fatal(err)
	}
	_ = admin.Close()

	c := startCompat(t, Options{User: user, Password: password})
	ref, got := newAuthSide(t, "etcd", refURL, user, password), newAuthSide(t, "etcdcompat", c.url, user, password)
	for _, s := range []*side{ref, got} {
		r := s.postAuth(t, s.token(t), "/v3/kv/range", `{"key":"eA=="}`)
		m := regexp.MustCompile(`"revision":"rev0\+(\d+)"`).FindStringSubmatch(r)
		if m == nil {
			t.Fatalf("%s: no revision in %s", s.name, r)
		}
		fmt.Sscan(m[1], &s.rev0)
	}
	p := keyPrefix(t)
	k := b64(p + "k")
	steps := []step{
		{"put without token", func(t *testing.T, s *side) string {
			return s.post(t, "/v3/kv/put", `{"key":"`+k+`","value":"dg=="}`)
		}},
		{"range without token", func(t *testing.T, s *side) string { return s.post(t, "/v3/kv/range", `{"key":"`+k+`"}`) }},
		{"authenticate wrong password", func(t *testing.T, s *side) string {
			return s.post(t, "/v3/auth/authenticate", `{"name":"root","password":"nope"}`)
		}},
		{"authenticate unknown user", func(t *testing.T, s *side) string {
			return s.post(t, "/v3/auth/authenticate", `{"name":"bob","password":"s3cret"}`)
		}},
		{"authenticate", func(t *testing.T, s *side) string {
			return tokenField.ReplaceAllString(s.post(t, "/v3/auth/authenticate", `{"name":"root","password":"s3cret"}`), `"token":"T"`)
		}},
		{"put with token", func(t *testing.T, s *side) string {
			return s.postAuth(t, s.token(t), "/v3/kv/put", `{"key":"`+k+`","value":"dg=="}`)
		}},
		{"range with token", func(t *testing.T, s *side) string {
			return s.postAuth(t, s.token(t), "/v3/kv/range", `{"key":"`+k+`"}`)
		}},
		{"bad token", func(t *testing.T, s *side) string {
			return s.postAuth(t, "abcdefghijklmnop.1", "/v3/kv/range", `{"key":"`+k+`"}`)
		}},
		{"watch without token", func(t *testing.T, s *side) string {
			body := `{"create_request":{"key":"` + k + `"}}`
			resp, br := s.stream(t, "/v3/watch", body)
			defer resp.Body.Close()
			return strings.Join(s.readLines(t, br, 1, 5*time.Second), "\n")
		}},
		{"watch with token", func(t *testing.T, s *side) string {
			body := `{"create_request":{"key":"` + k + `","start_revision":"` + fmt.Sprint(s.rev(1)) + `"}}`
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/v3/watch", strings.NewReader(body))
			req.Header.Set("Authorization", s.token(t))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			return strings.Join(s.readLines(t, bufio.NewReader(resp.Body), 2, 5*time.Second), "\n")
		}},
		{"grpc range without token", func(t *testing.T, s *side) string {
			return s.res(s.kv.Range(context.Background(), &pb.RangeRequest{Key: []byte(p + "k")}))
		}},
		{"grpc range with token", func(t *testing.T, s *side) string {
			ctx := metadata.AppendToOutgoingContext(context.Background(), "token", s.token(t))
			return s.res(s.kv.Range(ctx, &pb.RangeRequest{Key: []byte(p + "k")}))
		}},
		{"clientv3 with credentials", func(t *testing.T, s *side) string {
			cli, err := clientv3.New(clientv3.Config{Endpoints: []string{s.base}, Username: user, Password: password,
				DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
			if err != nil {
				return "ERR " + err.Error()
			}
			defer cli.Close()
			r, err := cli.Get(context.Background(), p+"k")
			if err != nil {
				return "ERR " + err.Error()
			}
			return s.res((*pb.RangeResponse)(r), nil)
		}},
		{"lease grant without token", func(t *testing.T, s *side) string {
			r := s.post(t, "/v3/lease/grant", `{"TTL":5}`)
			return strings.SplitN(r, " ", 2)[0]
		}},
		{"status without token", func(t *testing.T, s *side) string {
			r := s.post(t, "/v3/maintenance/status", `{}`)
			return strings.SplitN(r, " ", 2)[0]
		}},
		{"auth status", func(t *testing.T, s *side) string {
			// authRevision counts etcd's auth changes (user add, grant...).
			out := s.post(t, "/v3/auth/status", `{}`) + "\n" + s.postAuth(t, s.token(t), "/v3/auth/status", `{}`)
			return regexp.MustCompile(`"authRevision":"\d+",`).ReplaceAllString(out, "")
		}},
	}
	for _, st := range steps {
		want := st.do(t, ref)
		t.Logf("%s: %.1000s", st.name, want)
		if g := st.do(t, got); g != want {
			t.Errorf("%s:\n etcd:       %s\n etcdcompat: %s", st.name, want, g)
		}
	}

	// Without a configured user, Authenticate answers as an etcd without
	// auth: FailedPrecondition, 412 over HTTP.
	runDiff(t, []step{{"authenticate when disabled", func(t *testing.T, s *side) string {
		return s.post(t, "/v3/auth/authenticate", `{"name":"root","password":"x"}`)
	}}})
}

func newAuthSide(t *testing.T, name, base, user, password string) *side {
	t.Helper()
	return &side{name: name, base: base, lids: map[string]string{}, http: &http.Client{Timeout: 10 * time.Second},
		kv: newRawKV(t, base), tok: &tokenCache{user: user, password: password}}
}

// newRawKV is a KV client without credentials over a clientv3 connection.
func newRawKV(t *testing.T, base string) pb.KVClient {
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{base}, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return pb.NewKVClient(cli.ActiveConnection())
}

// tokenCache holds a side's token once authenticated.
type tokenCache struct {
	user, password, token string
}

func (s *side) token(t *testing.T) string {
	t.Helper()
	if s.tok.token != "" {
		return s.tok.token
	}
	r := s.post(t, "/v3/auth/authenticate", fmt.Sprintf(`{"name":%q,"password":%q}`, s.tok.user, s.tok.password))
	m := tokenField.FindString(r)
	if m == "" {
		t.Fatalf("%s: no token in %s", s.name, r)
	}
	s.tok.token = strings.TrimSuffix(strings.TrimPrefix(m, `"token":"`), `"`)
	return s.tok.token
}

func (s *side) postAuth(t *testing.T, token, path, body string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", token)
	resp, err := s.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := resp.Body.Read(buf)
		b.WriteString(string(buf[:n]))
		if err != nil {
			break
		}
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, s.normJSON([]byte(b.String())))
}

package etcdcompat

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"testing"
	"time"
)

// luaConn speaks HTTP/1.1 on one keep-alive connection exactly as
// lua-resty-http does for lua-resty-etcd: Host, User-Agent and
// Content-Length only, no Content-Type.
type luaConn struct {
	t    *testing.T
	s    *side
	c    net.Conn
	r    *bufio.Reader
	host string
}

func (s *side) dialLua(t *testing.T) *luaConn {
	t.Helper()
	host := strings.TrimPrefix(s.base, "http://")
	c, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &luaConn{t: t, s: s, c: c, r: bufio.NewReader(c), host: host}
}

func (l *luaConn) write(method, path, body string) {
	l.t.Helper()
	req := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: lua-resty-http/0.17.1 (Lua) ngx_lua/10025\r\n", method, path, l.host)
	if method == http.MethodPost {
		req += "Content-Length: " + strconv.Itoa(len(body)) + "\r\n"
	}
	req += "\r\n" + body
	_ = l.c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(l.c, req); err != nil {
		l.t.Fatalf("%s: write: %v", l.s.name, err)
	}
}

// do sends a request and returns the normalized body of a non-streamed
// response, with its status.
func (l *luaConn) do(method, path, body string) string {
	l.t.Helper()
	l.write(method, path, body)
	resp, err := http.ReadResponse(l.r, nil)
	if err != nil {
		l.t.Fatalf("%s: %s %s: %v", l.s.name, method, path, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		l.t.Fatalf("%s: %s %s: body: %v", l.s.name, method, path, err)
	}
	return fmt.Sprintf("%d %s", resp.StatusCode, l.s.normJSON(b))
}

// startWatch sends a watch and reads the response head; chunks are read
// one by one with chunk.
func (l *luaConn) startWatch(body string) string {
	l.t.Helper()
	l.write(http.MethodPost, "/v3/watch", body)
	tp := textproto.NewReader(l.r)
	line, err := tp.ReadLine()
	if err != nil {
		l.t.Fatalf("%s: watch status: %v", l.s.name, err)
	}
	h, err := tp.ReadMIMEHeader()
	if err != nil {
		l.t.Fatalf("%s: watch headers: %v", l.s.name, err)
	}
	return fmt.Sprintf("%s te=%s ct=%s", line, h.Get("Transfer-Encoding"), h.Get("Content-Type"))
}

// chunk reads one HTTP chunk and checks it holds exactly one JSON object
// followed by "\n", which is what lua-resty-etcd's read_watch needs.
func (l *luaConn) chunk() map[string]any {
	l.t.Helper()
	_ = l.c.SetDeadline(time.Now().Add(5 * time.Second))
	sizeLine, err := l.r.ReadString('\n')
	if err != nil {
		l.t.Fatalf("%s: chunk size: %v", l.s.name, err)
	}
	n, err := strconv.ParseInt(strings.TrimSpace(sizeLine), 16, 64)
	if err != nil || n == 0 {
		l.t.Fatalf("%s: chunk size line %q", l.s.name, sizeLine)
	}
	buf := make([]byte, n+2)
	if _, err := io.ReadFull(l.r, buf); err != nil {
		l.t.Fatalf("%s: chunk: %v", l.s.name, err)
	}
	data := string(buf[:n])
	if !strings.HasSuffix(data, "\n") || strings.Count(data, "\n") != 1 || string(buf[n:]) != "\r\n" {
		l.t.Fatalf("%s: chunk is not one JSON line: %q", l.s.name, data)
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(data), &m); err != nil {
		l.t.Fatalf("%s: chunk JSON: %v: %q", l.s.name, err, data)
	}
	return m
}

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

// readdirBody is the range lua-resty-etcd's readdir sends: all 13 fields.
func readdirBody(key, end string) string {
	return fmt.Sprintf(`{"key":"%s","range_end":"%s","limit":0,"revision":0,"sort_order":0,"sort_target":0,"serializable":false,"keys_only":false,"count_only":false,"min_mod_revision":0,"max_mod_revision":0,"min_create_revision":0,"max_create_revision":0}`,
		b64(key), b64(end))
}

// TestAPISIXSync replays, on both servers, the requests of APISIX's CLI
// bootstrap, of a 3.x data plane start (readdir, then one watch on
// prefix/ .. prefix0 from revision+1) and of Admin API writes, and checks
// the watch delivers every change in order, one JSON line per chunk, one
// message per revision, DELETE events without value.
func TestAPISIXSync(t *testing.T) {
	prefix := fmt.Sprintf("/apisix%d", time.Now().UnixNano()%1e9)
	dirs := []string{"routes", "upstreams", "services", "ssls", "plugin_configs", "global_rules",
		"consumers", "consumer_groups", "protos", "plugin_metadata", "secrets", "stream_routes", "plugins"}
	route := func(id, uri string) string {
		return b64(fmt.Sprintf(`{"id":"%s","uri":"%s","upstream":{"nodes":{"127.0.0.1:80":1},"type":"roundrobin"}}`, id, uri))
	}
	steps := []step{
		{"bootstrap", func(t *testing.T, s *side) string {
			l := s.dialLua(t)
			out := []string{l.do(http.MethodGet, "/version", "")}
			for _, d := range dirs {
				out = append(out, l.do(http.MethodPost, "/v3/kv/put",
					fmt.Sprintf(`{"key":"%s","value":"%s"}`, b64(prefix+"/"+d+"/"), b64("init_dir"))))
			}
			return strings.Join(out, "\n")
		}},
		{"sync", func(t *testing.T, s *side) string {
			l := s.dialLua(t)
			readdir := l.do(http.MethodPost, "/v3/kv/range", readdirBody(prefix, string(prefixEnd(prefix))))
			if strings.Count(readdir, `"value":"`+b64("init_dir")+`"`) != len(dirs) {
				t.Errorf("%s: readdir misses placeholders: %s", s.name, readdir)
			}
			head := l.startWatch(fmt.Sprintf(`{"create_request":{"key":"%s","range_end":"%s","start_revision":%d}}`,
				b64(prefix+"/"), b64(prefix+"0"), s.rev(len64(dirs)+1)))
			out := []string{readdir, head, s.normAny(l.chunk())}

			// Admin API writes on a second connection.
			a := s.dialLua(t)
			out = append(out,
				a.do(http.MethodPost, "/v3/kv/put", fmt.Sprintf(`{"key":"%s","value":"%s","prev_kv":true}`, b64(prefix+"/routes/1"), route("1", "/a"))),
				a.do(http.MethodPost, "/v3/kv/put", fmt.Sprintf(`{"key":"%s","value":"%s","prev_kv":true}`, b64(prefix+"/routes/1"), route("1", "/b"))),
				a.do(http.MethodPost, "/v3/kv/txn", fmt.Sprintf(`{"compare":[{"key":"%s","target":"MOD","result":"EQUAL","mod_revision":%d}],"success":[{"requestPut":{"key":"%s","value":"%s"}}]}`,
					b64(prefix+"/routes/1"), s.rev(len64(dirs)+2), b64(prefix+"/routes/1"), route("1", "/c"))),
				a.do(http.MethodPost, "/v3/kv/txn", fmt.Sprintf(`{"compare":[{"key":"%s","target":"MOD","result":"EQUAL","mod_revision":1}],"success":[{"requestPut":{"key":"%s","value":"%s"}}]}`,
					b64(prefix+"/routes/1"), b64(prefix+"/routes/1"), route("1", "/d"))),
				a.do(http.MethodPost, "/v3/kv/txn", fmt.Sprintf(`{"compare":[{"key":"%s","target":"CREATE","result":"EQUAL","createRevision":0}],"success":[{"requestPut":{"key":"%s","value":"%s"}}]}`,
					b64(prefix+"/routes/2"), b64(prefix+"/routes/2"), route("2", "/e"))),
			)
			grant := a.do(http.MethodPost, "/v3/lease/grant", `{"TTL":60,"ID":0}`)
			out = append(out, grant)
			lease := leaseID(t, a, grant)
			out = append(out,
				a.do(http.MethodPost, "/v3/kv/put", fmt.Sprintf(`{"key":"%s","value":"%s","lease":"%s"}`, b64(prefix+"/data_plane/server_info/x"), b64(`{"id":"x"}`), lease)),
				a.do(http.MethodPost, "/v3/lease/keepalive", fmt.Sprintf(`{"ID":"%s"}`, lease)),
				a.do(http.MethodPost, "/v3/kv/deleterange", fmt.Sprintf(`{"key":"%s"}`, b64(prefix+"/routes/1"))),
				a.do(http.MethodPost, "/v3/kv/deleterange", fmt.Sprintf(`{"key":"%s"}`, b64(prefix+"/routes/404"))),
				a.do(http.MethodPost, "/v3/kv/lease/revoke", fmt.Sprintf(`{"ID":"%s"}`, lease)),
			)
			// Expected on the watch: put, put, txn put, setnx put, leased put,
			// delete, lease revoke delete: 7 revisions, one message each.
			last := int64(0)
			for i := 0; i < 7; i++ {
				m := l.chunk()
				res := m["result"].(map[string]any)
				rev := mustInt(t, res["header"].(map[string]any)["revision"])
				if rev <= last {
					t.Errorf("%s: header.revision %d after %d", s.name, rev, last)
				}
				last = rev
				for _, e := range res["events"].([]any) {
					ev := e.(map[string]any)
					kv := ev["kv"].(map[string]any)
					if mustInt(t, kv["mod_revision"]) != rev {
						t.Errorf("%s: event at %v in message of revision %d", s.name, kv["mod_revision"], rev)
					}
					if ev["type"] == "DELETE" {
						if _, has := kv["value"]; has || len(kv) != 2 {
							t.Errorf("%s: DELETE event kv must carry only key and mod_revision: %v", s.name, kv)
						}
					} else if _, has := ev["type"]; has {
						t.Errorf("%s: PUT event with a type field: %v", s.name, ev)
					}
				}
				out = append(out, s.normAny(m))
			}
			return strings.Join(out, "\n")
		}},
		{"readdir after", func(t *testing.T, s *side) string {
			l := s.dialLua(t)
			return l.do(http.MethodPost, "/v3/kv/range", readdirBody(prefix+"/routes", prefix+"/routet")) + "\n" +
				l.do(http.MethodPost, "/v3/kv/range", readdirBody(prefix+"/nothing", prefix+"/nothinh"))
		}},
		{"compacted re-watch", func(t *testing.T, s *side) string {
			l := s.dialLua(t)
			out := []string{l.do(http.MethodPost, "/v3/kv/compaction", fmt.Sprintf(`{"revision":%d}`, s.rev(len64(dirs)+5)))}
			out = append(out, l.startWatch(fmt.Sprintf(`{"create_request":{"key":"%s","range_end":"%s","start_revision":%d}}`,
				b64(prefix+"/"), b64(prefix+"0"), s.rev(len64(dirs)+1))))
			out = append(out, s.normAny(l.chunk()), s.normAny(l.chunk()))
			return strings.Join(out, "\n")
		}},
	}
	runDiff(t, steps)
}

func len64[T any](s []T) int64 { return int64(len(s)) }

func (s *side) normAny(m map[string]any) string {
	b, _ := json.Marshal(m)
	return s.normJSON(b)
}

func mustInt(t *testing.T, v any) int64 {
	t.Helper()
	s, _ := v.(string)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatalf("not a string-encoded int64: %#v", v)
	}
	return n
}

// leaseID extracts the raw lease id of a grant answer (the rendered one is
// normalized).
func leaseID(t *testing.T, l *luaConn, _ string) string {
	t.Helper()
	l.write(http.MethodPost, "/v3/lease/leases", `{}`)
	resp, err := http.ReadResponse(l.r, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct {
		Leases []struct{ ID string } `json:"leases"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&v); err != nil || len(v.Leases) == 0 {
		t.Fatalf("leases: %v %v", err, v)
	}
	// The newest lease: etcd and etcdcompat list in no guaranteed order, so
	// take the largest id that is not 4242 (TestDiffLease's).
	best := ""
	for _, x := range v.Leases {
		if x.ID != "4242" && (best == "" || len(x.ID) > len(best) || (len(x.ID) == len(best) && x.ID > best)) {
			best = x.ID
		}
	}
	return best
}

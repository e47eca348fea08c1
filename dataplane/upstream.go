package dataplane

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// APISIX defaults for proxy timeouts and keepalive pools.
const (
	defaultTimeout      = 60 * time.Second
	defaultPoolSize     = 320
	defaultPoolIdle     = 60 * time.Second
	defaultPoolRequests = 1000
)

// passHost is how the Host header sent upstream is chosen.
type passHost int

const (
	passHostPass passHost = iota
	passHostNode
	passHostRewrite
)

func (p passHost) String() string {
	switch p {
	case passHostPass:
		return "pass"
	case passHostNode:
		return "node"
	case passHostRewrite:
		return "rewrite"
	}
	return "passHost(" + strconv.Itoa(int(p)) + ")"
}

// timeouts are effective proxy timeouts.
type timeouts struct{ connect, send, read time.Duration }

func toTimeouts(t *apisix.Timeout) timeouts {
	if t == nil {
		return timeouts{defaultTimeout, defaultTimeout, defaultTimeout}
	}
	d := func(s float64) time.Duration {
		if s <= 0 {
			return defaultTimeout
		}
		return time.Duration(s * float64(time.Second))
	}
	return timeouts{d(t.Connect), d(t.Send), d(t.Read)}
}

// node is one endpoint of an upstream with its connection pool.
type node struct {
	addr     string
	hostHdr  []byte // Host for pass_host=node: host, plus :port if not default
	weight   int
	priority int
	hc       *fasthttp.HostClient
	inflight atomic.Int64
}

// upstream is the compiled, runtime form of an apisix.Upstream. It is
// shared by every snapshot in which its key (id + content hash + route
// timeout override) is unchanged, so its pools and counters carry over.
type upstream struct {
	id       string
	key      string
	scheme   string
	tls      bool
	grpc     bool
	passHost passHost
	host     []byte // upstream_host for pass_host=rewrite
	retries  int
	retryTO  time.Duration
	to       timeouts
	nodes    []*node
	// groups are node indexes by priority, highest first; each has a
	// smooth weighted round-robin schedule.
	groups []group
	h2     h2Upstream // HTTP/2 transport (grpc, h2), built on first use
}

type group struct {
	nodes []int
	sched []uint16
	next  atomic.Uint64
}

// UpstreamID implements plugins.Upstream.
func (u *upstream) UpstreamID() string { return u.id }

// errNoNode is returned when an upstream has no usable node.
var errNoNode = errors.New("dataplane: no valid upstream node")

// upstreamKey identifies the runtime state of an upstream: its id, a hash
// of its content and the timeout override of the route using it.
func upstreamKey(id string, u *apisix.Upstream, override *apisix.Timeout) string {
	h := fnv.New64a()
	b, _ := json.Marshal(u)
	h.Write(b)
	if override != nil {
		fmt.Fprintf(h, "|%v|%v|%v", override.Connect, override.Send, override.Read)
	}
	return id + "#" + strconv.FormatUint(h.Sum64(), 16)
}

// newUpstream compiles u. override (a route timeout) replaces u.Timeout.
func newUpstream(id, key string, u *apisix.Upstream, override *apisix.Timeout) (*upstream, error) {
	if u == nil {
		return nil, fmt.Errorf("dataplane: upstream %s: missing", id)
	}
	if len(u.Nodes) == 0 {
		if u.ServiceName != "" {
			return nil, fmt.Errorf("dataplane: upstream %s: field \"service_name\": service discovery is not supported", id)
		}
	}
	up := &upstream{id: id, key: key, scheme: u.Scheme}
	switch u.Scheme {
	case "", "http":
		up.scheme = "http"
	case "https":
		up.tls = true
	case "grpc":
		up.grpc = true
	case "grpcs":
		up.grpc, up.tls = true, true
	case "tcp", "tls":
	default:
		return nil, fmt.Errorf("dataplane: upstream %s: field \"scheme\": %q is not supported", id, u.Scheme)
	}
	switch u.PassHost {
	case "", "pass":
	case "node":
		up.passHost = passHostNode
	case "rewrite":
		if u.UpstreamHost == "" {
			return nil, fmt.Errorf("dataplane: upstream %s: field \"upstream_host\": required when pass_host is rewrite", id)
		}
		up.passHost, up.host = passHostRewrite, []byte(u.UpstreamHost)
	default:
		return nil, fmt.Errorf("dataplane: upstream %s: field \"pass_host\": one of pass, node, rewrite", id)
	}
	up.to = toTimeouts(u.Timeout)
	if override != nil {
		up.to = toTimeouts(override)
	}
	if u.RetryTimeout != nil && *u.RetryTimeout > 0 {
		up.retryTO = time.Duration(*u.RetryTimeout * float64(time.Second))
	}
	pool := u.KeepalivePool
	size, idle, reqs := defaultPoolSize, defaultPoolIdle, defaultPoolRequests
	if pool != nil {
		if pool.Size > 0 {
			size = pool.Size
		}
		if pool.IdleTimeout > 0 {
			idle = time.Duration(pool.IdleTimeout * float64(time.Second))
		}
		if pool.Requests > 0 {
			reqs = pool.Requests
		}
	}
	defPort := 80
	if up.tls {
		defPort = 443
	}
	for i, n := range u.Nodes {
		if n.Host == "" {
			return nil, fmt.Errorf("dataplane: upstream %s: field \"nodes[%d].host\": required", id, i)
		}
		port := n.Port
		if port == 0 {
			port = defPort
		}
		hostHdr := n.Host
		if port != defPort {
			hostHdr = net.JoinHostPort(n.Host, strconv.Itoa(port))
		}
		nd := &node{addr: net.JoinHostPort(n.Host, strconv.Itoa(port)), hostHdr: []byte(hostHdr), weight: n.Weight, priority: n.Priority}
		nd.hc = newHostClient(nd.addr, up, size, idle, reqs)
		up.nodes = append(up.nodes, nd)
	}
	if u.Retries != nil {
		up.retries = *u.Retries
	} else {
		up.retries = max(0, len(up.nodes)-1)
	}
	up.groups = buildGroups(up.nodes)
	return up, nil
}

// connectError marks a failure to establish the upstream connection; it
// is always safe to retry on another node.
type connectError struct{ err error }

func (e *connectError) Error() string { return "connect: " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

func newHostClient(addr string, up *upstream, size int, idle time.Duration, reqs int) *fasthttp.HostClient {
	d := &net.Dialer{Timeout: up.to.connect, KeepAlive: 30 * time.Second}
	hc := &fasthttp.HostClient{
		Addr:                          addr,
		IsTLS:                         up.tls,
		MaxConns:                      size * 16,
		MaxIdleConnDuration:           idle,
		MaxConnDuration:               0,
		ReadTimeout:                   up.to.read,
		WriteTimeout:                  up.to.send,
		MaxConnWaitTimeout:            up.to.connect,
		NoDefaultUserAgentHeader:      true,
		DisableHeaderNamesNormalizing: true,
		DisablePathNormalizing:        true,
		MaxIdemponentCallAttempts:     2,
		// A stale keep-alive connection reset before any response byte is
		// retried once on a fresh connection for idempotent requests
		// (pain point #9); timeouts are never retried here.
		RetryIfErr: func(req *fasthttp.Request, _ int, err error) (bool, bool) {
			if errors.Is(err, fasthttp.ErrTimeout) {
				return false, false
			}
			return false, idempotent(req)
		},
		Dial: func(a string) (net.Conn, error) {
			c, err := d.Dial("tcp", a)
			if err != nil {
				return nil, &connectError{err}
			}
			return c, nil
		},
	}
	_ = reqs // fasthttp closes conns by duration, not count; size bounds the pool.
	if up.tls {
		hc.TLSConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // APISIX does not verify upstream certs by default.
	}
	return hc
}

func idempotent(req *fasthttp.Request) bool {
	h := &req.Header
	return h.IsGet() || h.IsHead() || h.IsPut() || h.IsDelete() || h.IsOptions() || h.IsTrace()
}

func buildGroups(nodes []*node) []group {
	prios := map[int][]int{}
	var keys []int
	for i, n := range nodes {
		if _, ok := prios[n.priority]; !ok {
			keys = append(keys, n.priority)
		}
		prios[n.priority] = append(prios[n.priority], i)
	}
	// highest priority first
	for i := 1; i < len(keys); i++ {
		for j := i; j > 0 && keys[j] > keys[j-1]; j-- {
			keys[j], keys[j-1] = keys[j-1], keys[j]
		}
	}
	gs := make([]group, len(keys))
	for gi, k := range keys {
		idx := prios[k]
		w := make([]int, len(idx))
		for i, ni := range idx {
			w[i] = nodes[ni].weight
		}
		gs[gi].nodes = idx
		gs[gi].sched = wrrSchedule(w)
	}
	return gs
}

// wrrSchedule is nginx's smooth weighted round-robin order over weights,
// reduced by their gcd and capped in length.
func wrrSchedule(weights []int) []uint16 {
	g, total := 0, 0
	for _, w := range weights {
		g = gcd(g, max(w, 0))
	}
	if g == 0 {
		return nil
	}
	ws := make([]int, len(weights))
	for i, w := range weights {
		ws[i] = max(w, 0) / g
		total += ws[i]
	}
	const limit = 4096
	if total > limit {
		t := 0
		for i := range ws {
			if ws[i] > 0 {
				ws[i] = max(1, ws[i]*limit/total)
			}
			t += ws[i]
		}
		total = t
	}
	cur := make([]int, len(ws))
	out := make([]uint16, 0, total)
	for range total {
		best := -1
		for i, w := range ws {
			cur[i] += w
			if w > 0 && (best < 0 || cur[i] > cur[best]) {
				best = i
			}
		}
		cur[best] -= total
		out = append(out, uint16(best))
	}
	return out
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

// pick returns a node not yet in tried (a bitmask of node indexes),
// highest priority group first, weighted round-robin inside a group.
func (u *upstream) pick(tried uint64) (int, bool) {
	for gi := range u.groups {
		g := &u.groups[gi]
		n := uint64(len(g.sched))
		if n == 0 {
			continue
		}
		start := g.next.Add(1) - 1
		for k := uint64(0); k < n; k++ {
			ni := g.nodes[g.sched[(start+k)%n]]
			if ni < 64 && tried&(1<<uint(ni)) != 0 {
				continue
			}
			return ni, true
		}
	}
	return 0, false
}

// close releases idle pooled connections.
func (u *upstream) close() {
	for _, n := range u.nodes {
		n.hc.CloseIdleConnections()
	}
	u.h2.close()
}

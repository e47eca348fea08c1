package dataplane

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/dataplane/health"
	"github.com/meshagent/meshagent/dataplane/mtls"
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
	hc       *hostPool // created lazily, on the first request
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
	// picker chooses nodes (dataplane/balancer); its per-node state
	// (in-flight, EWMA) is shared by every runtime of the same upstream id.
	picker balancer.Picker
	// timed: the picker uses round-trip times (ewma); other balancers
	// spare the request path its clock reads.
	timed bool
	// keySpec derives the chash key; nil for other balancers.
	keySpec *balancer.KeySpec
	// checker tracks node health (dataplane/health); hf is it as a
	// balancer.Health, nil when the upstream has no checks.
	checker *health.Checker
	hf      balancer.Health
	h2      *h2Upstream // HTTP/2 transport (grpc, h2), built on first use; shared like the node pools
	// poolSig identifies the node pool settings (TLS, timeouts, keepalive
	// pool): nodes of a changed upstream with the same poolSig keep their
	// fasthttp.HostClient, so an endpoint change does not reconnect all.
	poolSig string
	// poolReqs is keepalive_pool.requests: the requests a node
	// connection carries before it is closed.
	poolReqs int
	// tlsConf is the client TLS config (mTLS: certificates looked up per
	// handshake, so rotation needs no new upstream); nil without TLS.
	tlsConf *tls.Config
	// od is set for discovery_type original_dst (origdst.go): no nodes
	// nor picker; each request goes to its original destination.
	od *odSettings
	// dial dials the node (Options.PassThroughDial) of an original
	// destination's runtime (origdst.go); nil: a net.Dialer.
	dial dialFunc
	// fast caches whether the HTTP/1.1 event loops may forward here
	// (fastH1, h1loop_linux.go): 0 not known yet, 1 yes, 2 no.
	fast atomic.Int32
	// fastT caches whether TCP stream connections to it may be relayed on
	// the event loops (fastTCP, tcploop_linux.go), as fast does.
	fastT atomic.Int32
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

// upstreamEnv is what newUpstream needs beyond the object: the balancer
// state of the upstream id and the previous health checker to carry over.
type upstreamEnv struct {
	states *balancer.States
	prev   *health.Checker
	log    *slog.Logger
	tlsm   *mtls.Manager // mTLS; nil: TLS without verification
	// prevUp is the previous runtime of the same upstream id: its node
	// connection pools are reused when the pool settings are unchanged.
	prevUp *upstream
}

// newUpstream compiles u. override (a route timeout) replaces u.Timeout.
func newUpstream(id, key string, u *apisix.Upstream, override *apisix.Timeout, env upstreamEnv) (*upstream, error) {
	if u == nil {
		return nil, fmt.Errorf("dataplane: upstream %s: missing", id)
	}
	if u.DiscoveryType == discoveryOriginalDst { // origdst.go
		if err := checkOrigDst(u); err != nil {
			return nil, fmt.Errorf("dataplane: upstream %s: %w", id, err)
		}
	} else if len(u.Nodes) == 0 {
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
	if err := up.setTLS(u, env.tlsm); err != nil { // mTLS
		return nil, fmt.Errorf("dataplane: upstream %s: %w", id, err)
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
	tlsJSON, _ := json.Marshal(u.TLS)
	up.poolSig = fmt.Sprintf("%v|%v|%d|%v|%d|%s", up.tls, up.to, size, idle, reqs, tlsJSON)
	up.poolReqs = reqs
	var reuse map[string]*hostPool
	up.h2 = &h2Upstream{}
	if p := env.prevUp; p != nil && p.poolSig == up.poolSig && p.grpc == up.grpc {
		up.h2 = p.h2
		reuse = make(map[string]*hostPool, len(p.nodes))
		for _, n := range p.nodes {
			reuse[n.addr] = n.hc
		}
	}
	for i, n := range u.Nodes {
		if n.Host == "" {
			return nil, fmt.Errorf("dataplane: upstream %s: field \"nodes[%d].host\": required", id, i)
		}
		port := n.Port
		if port == 0 {
			port = defPort
		}
		// An IPv6 host comes bracketed ("[::1]"), as APISIX wants it.
		host := strings.TrimSuffix(strings.TrimPrefix(n.Host, "["), "]")
		hostHdr := n.Host
		if port != defPort {
			hostHdr = net.JoinHostPort(host, strconv.Itoa(port))
		}
		nd := &node{addr: net.JoinHostPort(host, strconv.Itoa(port)), hostHdr: []byte(hostHdr), weight: n.Weight, priority: n.Priority}
		if hc, ok := reuse[nd.addr]; ok {
			nd.hc = hc // keep the warm connections of an unchanged node
		} else {
			nd.hc = newHostPool(nd.addr, up, size, idle)
		}
		up.nodes = append(up.nodes, nd)
	}
	if u.Retries != nil {
		up.retries = *u.Retries
	} else {
		up.retries = max(0, len(up.nodes)-1)
	}
	if u.DiscoveryType == discoveryOriginalDst { // origdst.go
		return up.initOrigDst(u, env, size, idle)
	}
	bnodes, err := balancer.NodesFromUpstream(u)
	if err != nil {
		return nil, fmt.Errorf("dataplane: upstream %s: %w", id, err)
	}
	kind, err := balancer.ParseKind(u.Type)
	if err != nil {
		return nil, fmt.Errorf("dataplane: upstream %s: %w", id, err)
	}
	if kind == balancer.CHash {
		if up.keySpec, err = balancer.NewKeySpec(u.HashOn, u.Key); err != nil {
			return nil, fmt.Errorf("dataplane: upstream %s: %w", id, err)
		}
	}
	up.timed = kind == balancer.EWMA
	if up.picker, err = balancer.New(kind, bnodes, env.states); err != nil {
		return nil, fmt.Errorf("dataplane: upstream %s: %w", id, err)
	}
	if u.Checks != nil {
		targets := make([]health.Target, len(bnodes))
		for i, n := range bnodes {
			targets[i] = health.Target{Addr: n.Addr, Host: u.Nodes[i].Host}
		}
		c, err := health.New(health.Config{Targets: targets, Checks: u.Checks, Prev: env.prev, Logger: env.log})
		if err != nil {
			return nil, fmt.Errorf("dataplane: upstream %s: %w", id, err)
		}
		up.checker, up.hf = c, c
	}
	return up, nil
}

// start begins active health checks (once the upstream is published).
func (u *upstream) start() {
	if u.checker != nil {
		u.checker.Start()
	}
}

// done reports the outcome of one try on node idx to the
// balancer and the passive health check.
// start is the try's start time, zero when !u.timed (see startTry).
func (u *upstream) done(idx int, start time.Time, status int, err error) {
	var rtt time.Duration
	if u.timed {
		rtt = time.Since(start)
	}
	u.picker.Done(idx, rtt)
	if u.checker == nil {
		return
	}
	switch {
	case err == nil:
		u.checker.Report(idx, status, health.OutcomeResponse)
	case isTimeout(err):
		u.checker.Report(idx, 0, health.OutcomeTimeout)
	default:
		u.checker.Report(idx, 0, health.OutcomeTCPError)
	}
}

// startTry returns the start time of a try, read only when the balancer
// uses it.
func (u *upstream) startTry() time.Time {
	if u.timed {
		return time.Now()
	}
	return time.Time{}
}

// connectError marks a failure to establish the upstream connection; it
// is always safe to retry on another node.
type connectError struct{ err error }

func (e *connectError) Error() string { return "connect: " + e.err.Error() }
func (e *connectError) Unwrap() error { return e.err }

func idempotent(req *fasthttp.Request) bool {
	h := &req.Header
	return h.IsGet() || h.IsHead() || h.IsPut() || h.IsDelete() || h.IsOptions() || h.IsTrace()
}

// close releases idle pooled connections.
// retire stops the health checker and the HTTP/2 transport of a runtime
// no snapshot uses any more, and closes the idle connections of its node
// pools except those a newer runtime reuses (inUse).
func (u *upstream) retire(inUse map[any]bool) {
	for _, n := range u.nodes {
		if !inUse[n.hc] {
			n.hc.CloseIdleConnections()
		}
	}
	if !inUse[u.h2] {
		u.h2.close()
		u.closeOrigDst() // destination pools go with the HTTP/2 transport (origdst.go)
	}
	if u.checker != nil {
		u.checker.Stop()
	}
}

func (u *upstream) close() {
	for _, n := range u.nodes {
		n.hc.CloseIdleConnections()
	}
	u.h2.close()
	u.closeOrigDst()
	if u.checker != nil {
		u.checker.Stop()
	}
}

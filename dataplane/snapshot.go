package dataplane

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sort"
	"strings"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/dataplane/mtls"
	"github.com/meshagent/meshagent/dataplane/router"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/plugins"
)

// route is a compiled APISIX route: its plugin chain (global rules
// first), its upstream and the inputs it was built from.
type route struct {
	id        string
	obj       *apisix.Route
	table     string
	chain     *plugins.Chain
	up        *upstream // nil: answer 503
	websocket bool
	// fp fingerprints the inputs (revisions of route, service,
	// plugin_config, global rules, upstream key); deps records upstream
	// keys the plugins looked up, so reuse is exact.
	fp   string
	deps map[string]string
}

// streamRoute is a compiled APISIX stream_route.
type streamRoute struct {
	id         string
	obj        *apisix.StreamRoute
	up         *upstream
	serverPort int
	serverAddr netip.Addr    // invalid: any
	remote     *netip.Prefix // nil: any
	sni        string
}

// streamConn is what stream route matching looks at.
type streamConn struct {
	local  netip.AddrPort
	remote netip.Addr
	sni    string
}

// snapshot is an immutable compiled view of the store. Requests load it
// once and finish on it.
type snapshot struct {
	rev          int64
	tables       map[string]*router.Router[*route]
	routes       map[string]*route
	upstreams    map[string]*upstream // by key
	streamRoutes []*streamRoute
	listeners    map[string]*apisix.Listener
	certs        []*sslCert
	tlsm         *mtls.Manager // mTLS: certificates in force (shared by snapshots)
	// consumers are the compiled consumers by store key, reused by the
	// next build while their fingerprint is unchanged.
	consumers map[string]*builtConsumer
	// plainChain is the chain shared by every route without plugins of
	// its own (global rules only), built for the global fingerprint
	// plainFP; one chain instead of one per route.
	plainChain *plugins.Chain
	plainFP    string
}

// objects is the decoded store content, by kind and id.
type objects struct {
	rev           int64
	routes        map[string]store.Object
	upstreams     map[string]store.Object
	services      map[string]store.Object
	pluginConfigs map[string]store.Object
	globalRules   map[string]store.Object
	streamRoutes  map[string]store.Object
	ssls          map[string]store.Object
	listeners     map[string]store.Object
	secrets       map[string]store.Object // mTLS: /meshagent/secrets/
	consumers     map[string]store.Object
	credentials   map[string]store.Object
	groups        map[string]store.Object // consumer groups
}

func newObjects() *objects {
	return &objects{
		routes: map[string]store.Object{}, upstreams: map[string]store.Object{}, services: map[string]store.Object{},
		pluginConfigs: map[string]store.Object{}, globalRules: map[string]store.Object{}, streamRoutes: map[string]store.Object{},
		ssls: map[string]store.Object{}, listeners: map[string]store.Object{}, secrets: map[string]store.Object{},
		consumers: map[string]store.Object{}, credentials: map[string]store.Object{}, groups: map[string]store.Object{},
	}
}

// set applies one object (or its deletion when o.Value is nil).
func (os *objects) set(key string, o store.Object, deleted bool) {
	var m map[string]store.Object
	switch o.Value.(type) {
	case *apisix.Route:
		m = os.routes
	case *apisix.Upstream:
		m = os.upstreams
	case *apisix.Service:
		m = os.services
	case *apisix.PluginConfig:
		m = os.pluginConfigs
	case *apisix.GlobalRule:
		m = os.globalRules
	case *apisix.StreamRoute:
		m = os.streamRoutes
	case *apisix.SSL:
		m = os.ssls
	case *apisix.Listener:
		m = os.listeners
	case *apisix.Secret: // mTLS
		m = os.secrets
	case *apisix.Consumer:
		m = os.consumers
	case *apisix.Credential:
		m = os.credentials
	case *apisix.ConsumerGroup:
		m = os.groups
	case nil:
		if deleted {
			for _, mm := range os.all() {
				delete(mm, key)
			}
		}
		return
	default:
		return
	}
	if deleted {
		delete(m, key)
		return
	}
	// An object may change kind only by being deleted first; keys are
	// unique per kind directory, so keying by store key is exact.
	m[key] = o
}

// all lists the per-kind maps.
func (os *objects) all() []map[string]store.Object {
	return []map[string]store.Object{os.routes, os.upstreams, os.services, os.pluginConfigs, os.globalRules,
		os.streamRoutes, os.ssls, os.listeners, os.consumers, os.credentials, os.secrets, os.groups}
}

func idOf(key string) string { return key[strings.LastIndexByte(key, '/')+1:] }

// builder compiles snapshots. It is used by one goroutine.
type builder struct {
	log     *slog.Logger
	stats   *Stats
	prev    *snapshot
	objs    *objects
	upByID  map[string]*upstream
	ups     map[string]*upstream // by key, this build
	curDeps map[string]string
	curKey  string
	// states is the balancer state per upstream id, owned by the
	// Dataplane and only touched by the (single) builder.
	states    map[string]*balancer.States
	prevByID  map[string]*upstream
	seenIDs   map[string]bool
	consumers []*plugins.Consumer
	cur       *snapshot     // the snapshot being built
	tlsm      *mtls.Manager // mTLS: updated first in build
}

// upstream returns the runtime upstream for (id, u, override), reusing
// the previous snapshot's when its key is unchanged.
func (b *builder) upstream(id string, u *apisix.Upstream, override *apisix.Timeout) (*upstream, error) {
	key := upstreamKey(id, u, override)
	if up, ok := b.ups[key]; ok {
		b.seenIDs[id] = true
		return up, nil
	}
	if b.prev != nil {
		if up, ok := b.prev.upstreams[key]; ok {
			b.seenIDs[id] = true
			b.ups[key] = up
			return up, nil
		}
	}
	st := b.states[id]
	if st == nil {
		st = balancer.NewStates()
		b.states[id] = st
	}
	b.seenIDs[id] = true
	env := upstreamEnv{states: st, log: b.log, tlsm: b.tlsm}
	if p := b.prevByID[id]; p != nil {
		env.prev, env.prevUp = p.checker, p
	}
	up, err := newUpstream(id, key, u, override, env)
	if err != nil {
		return nil, err
	}
	b.ups[key] = up
	return up, nil
}

// build compiles objs into a snapshot. Objects that fail to compile keep
// their previous compiled version (if any); each failure is logged with
// the object id and the field, and counted.
func (b *builder) build() *snapshot {
	// Maps are sized up front: a rebuild of 10k routes otherwise spends
	// most of its garbage on growing them.
	nUps := len(b.objs.upstreams)
	if b.prev != nil {
		nUps = max(nUps, len(b.prev.upstreams))
	}
	s := &snapshot{
		rev: b.objs.rev, routes: make(map[string]*route, len(b.objs.routes)), listeners: map[string]*apisix.Listener{},
	}
	b.updateTLS(s) // mTLS: certificates before the upstreams and listeners using them
	b.cur = s
	b.ups = make(map[string]*upstream, nUps)
	b.upByID = make(map[string]*upstream, len(b.objs.upstreams))
	b.seenIDs = make(map[string]bool, nUps)
	b.prevByID = make(map[string]*upstream, nUps)
	if b.prev != nil {
		for _, up := range b.prev.upstreams {
			if q := b.prevByID[up.id]; q == nil || up.checker != nil {
				b.prevByID[up.id] = up
			}
		}
	}
	for _, o := range sortedObjs(b.objs.upstreams) {
		u := o.Value.(*apisix.Upstream)
		id := idOf(o.Key)
		up, err := b.upstream(id, u, nil)
		if err != nil {
			b.reject("upstream", id, err)
			continue
		}
		b.upByID[id] = up
	}
	var gfpConsumers string
	b.consumers, gfpConsumers = b.buildConsumers()
	// Global rules: each built independently; a bad one keeps nothing of
	// itself (it never compiled) but never blocks the rest.
	var global []plugins.Entry
	var gfp strings.Builder
	gfp.WriteString(gfpConsumers)
	for _, o := range sortedObjs(b.objs.globalRules) {
		g := o.Value.(*apisix.GlobalRule)
		fmt.Fprintf(&gfp, "%s@%d,", o.Key, o.ModRevision)
		b.curDeps, b.curKey = map[string]string{}, "global_rule/"+idOf(o.Key)
		es, err := b.entries(g.Plugins)
		if err != nil {
			b.reject("global_rule", idOf(o.Key), err)
			continue
		}
		global = append(global, es...)
	}
	// Digest of the global inputs: every route's fingerprint embeds it,
	// and the consumers' part alone grows with their number (1,000
	// consumers made each of 10k routes carry ~40 KB).
	globalFP := fpDigest(gfp.String())
	if b.prev != nil && b.prev.plainChain != nil && b.prev.plainFP == globalFP {
		s.plainChain, s.plainFP = b.prev.plainChain, globalFP // see chain
	}
	perTable := map[string]int{}
	for _, o := range b.objs.routes {
		perTable[o.Value.(*apisix.Route).Labels[apisix.LabelRouteConfig]]++
	}
	tableRoutes := make(map[string][]router.Route[*route], len(perTable))
	for t, n := range perTable { // exact capacities: no growth garbage
		tableRoutes[t] = make([]router.Route[*route], 0, n)
	}
	for _, o := range sortedObjs(b.objs.routes) {
		id := idOf(o.Key)
		r, err := b.route(id, o, global, globalFP)
		if err != nil {
			b.reject("route", id, err)
			if b.prev != nil {
				if old, ok := b.prev.routes[id]; ok {
					r = old
				}
			}
			if r == nil {
				continue
			}
		}
		var svc *apisix.Service
		if r.obj.ServiceID != "" {
			if so, ok := b.objs.services["/apisix/services/"+string(r.obj.ServiceID)]; ok {
				svc, _ = so.Value.(*apisix.Service)
			}
		}
		rr, err := router.FromAPISIX(r.obj, svc, r)
		if err != nil {
			b.reject("route", id, err)
			continue
		}
		s.routes[id] = r
		tableRoutes[r.table] = append(tableRoutes[r.table], rr)
	}
	s.tables = make(map[string]*router.Router[*route], len(tableRoutes)+1)
	for t, rs := range tableRoutes {
		rt, err := router.New(rs)
		if err != nil {
			b.reject("route_table", t, err)
			if b.prev != nil {
				s.tables[t] = b.prev.tables[t]
			}
			continue
		}
		s.tables[t] = rt
	}
	for _, o := range sortedObjs(b.objs.streamRoutes) {
		sr := o.Value.(*apisix.StreamRoute)
		id := idOf(o.Key)
		c, err := b.streamRoute(id, sr)
		if err != nil {
			b.reject("stream_route", id, err)
			continue
		}
		s.streamRoutes = append(s.streamRoutes, c)
	}
	for _, o := range sortedObjs(b.objs.ssls) {
		c, err := parseSSL(idOf(o.Key), o.Value.(*apisix.SSL))
		if err != nil {
			b.reject("ssl", idOf(o.Key), err)
			continue
		}
		if c != nil {
			s.certs = append(s.certs, c)
		}
	}
	for _, o := range sortedObjs(b.objs.listeners) {
		s.listeners[idOf(o.Key)] = o.Value.(*apisix.Listener)
	}
	s.upstreams = b.ups
	for id := range b.states {
		if !b.seenIDs[id] {
			delete(b.states, id)
		}
	}
	return s
}

// fpDigest is a fixed-size stand-in for a fingerprint: SHA-256, so two
// different inputs never pass for the same (a match reuses a compiled
// route as is).
func fpDigest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func (b *builder) reject(kind, id string, err error) {
	b.stats.ConfigRejected.Add(1)
	b.log.Error("dataplane: object rejected, previous version stays in force", "kind", kind, "id", id, "err", err)
}

func sortedObjs(m map[string]store.Object) []store.Object {
	out := make([]store.Object, 0, len(m))
	for _, o := range m {
		out = append(out, o)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// entries builds the filters of a plugins map, in name order.
func (b *builder) entries(ps apisix.Plugins) ([]plugins.Entry, error) {
	names := make([]string, 0, len(ps))
	for n := range ps {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]plugins.Entry, 0, len(names))
	for _, n := range names {
		e, err := plugins.Build(n, ps[n], pluginBuilder{b})
		if err != nil {
			return nil, fmt.Errorf("field \"plugins.%s\": %w", n, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// route compiles one route, reusing the previous compiled route when none
// of its inputs changed.
func (b *builder) route(id string, o store.Object, global []plugins.Entry, globalFP string) (*route, error) {
	r := o.Value.(*apisix.Route)
	if r.Script != "" || r.ScriptID != "" {
		return nil, errors.New("field \"script\": Lua scripts are not supported by the native data plane")
	}
	var fp strings.Builder
	fmt.Fprintf(&fp, "r@%d|g:%s|", o.ModRevision, globalFP)
	var svc *apisix.Service
	if r.ServiceID != "" {
		so, ok := b.objs.services["/apisix/services/"+string(r.ServiceID)]
		if !ok {
			return nil, fmt.Errorf("field \"service_id\": service %q not found", r.ServiceID)
		}
		svc = so.Value.(*apisix.Service)
		fmt.Fprintf(&fp, "s@%d|", so.ModRevision)
	}
	var pc *apisix.PluginConfig
	if r.PluginConfigID != "" {
		po, ok := b.objs.pluginConfigs["/apisix/plugin_configs/"+string(r.PluginConfigID)]
		if !ok {
			return nil, fmt.Errorf("field \"plugin_config_id\": plugin_config %q not found", r.PluginConfigID)
		}
		pc = po.Value.(*apisix.PluginConfig)
		fmt.Fprintf(&fp, "pc@%d|", po.ModRevision)
	}
	// Upstream: route inline, route upstream_id, service inline, service
	// upstream_id.
	var up *upstream
	var err error
	switch {
	case r.Upstream != nil:
		up, err = b.upstream("route/"+id, r.Upstream, r.Timeout)
	case r.UpstreamID != "":
		up, err = b.namedUpstream(r.UpstreamID, r.Timeout, "upstream_id")
	case svc != nil && svc.Upstream != nil:
		up, err = b.upstream("service/"+string(svc.ID), svc.Upstream, r.Timeout)
	case svc != nil && svc.UpstreamID != "":
		up, err = b.namedUpstream(svc.UpstreamID, r.Timeout, "service.upstream_id")
	}
	if err != nil {
		return nil, err
	}
	if up != nil {
		fp.WriteString("u:" + up.key)
	}
	key := fp.String()
	if b.prev != nil {
		if old, ok := b.prev.routes[id]; ok && old.fp == key && b.depsSame(old.deps) {
			return old, nil
		}
	}
	merged := apisix.Plugins{}
	if svc != nil {
		for n, c := range svc.Plugins {
			merged[n] = c
		}
	}
	if pc != nil {
		for n, c := range pc.Plugins {
			merged[n] = c
		}
	}
	for n, c := range r.Plugins {
		merged[n] = c
	}
	b.curDeps, b.curKey = nil, "route/"+id
	es, err := b.entries(merged)
	if err != nil {
		return nil, err
	}
	out := &route{
		id: id, obj: r, table: r.Labels[apisix.LabelRouteConfig], chain: b.chain(global, globalFP, es), up: up,
		websocket: r.EnableWebsocket || (svc != nil && svc.EnableWebsocket), fp: key, deps: b.curDeps,
	}
	return out, nil
}

// chain returns the plugin chain of a route: global rules then es. Routes
// without plugins of their own share one chain per global fingerprint;
// build carries it over to the next snapshot while the global rules are
// unchanged, so reused and new routes share the same one.
func (b *builder) chain(global []plugins.Entry, globalFP string, es []plugins.Entry) *plugins.Chain {
	if len(es) > 0 {
		return plugins.NewChain(global, es)
	}
	s := b.cur
	if s.plainChain == nil || s.plainFP != globalFP {
		s.plainChain, s.plainFP = plugins.NewChain(global, nil), globalFP
	}
	return s.plainChain
}

func (b *builder) namedUpstream(id apisix.ID, override *apisix.Timeout, field string) (*upstream, error) {
	o, ok := b.objs.upstreams["/apisix/upstreams/"+string(id)]
	if !ok {
		return nil, fmt.Errorf("field %q: upstream %q not found", field, id)
	}
	if override == nil {
		if up, ok := b.upByID[string(id)]; ok {
			return up, nil
		}
	}
	return b.upstream(string(id), o.Value.(*apisix.Upstream), override)
}

func (b *builder) depsSame(deps map[string]string) bool {
	for id, key := range deps {
		if u, ok := b.upByID[id]; !ok || u.key != key {
			return false
		}
	}
	return true
}

func (b *builder) streamRoute(id string, sr *apisix.StreamRoute) (*streamRoute, error) {
	// Refuse what the native data plane would otherwise silently ignore.
	if len(sr.Plugins) > 0 {
		return nil, errors.New("field \"plugins\": stream plugins are not supported by the native data plane")
	}
	if sr.Protocol != nil {
		return nil, errors.New("field \"protocol\": xRPC protocols are not supported by the native data plane")
	}
	var up *upstream
	var err error
	switch {
	case sr.Upstream != nil:
		up, err = b.upstream("stream_route/"+id, sr.Upstream, nil)
	case sr.UpstreamID != "":
		up, err = b.namedUpstream(sr.UpstreamID, nil, "upstream_id")
	default:
		err = fmt.Errorf("field \"upstream\": upstream or upstream_id is required")
	}
	if err != nil {
		return nil, err
	}
	out := &streamRoute{id: id, obj: sr, up: up, serverPort: sr.ServerPort, sni: strings.ToLower(sr.SNI)}
	if sr.ServerAddr != "" {
		a, err := netip.ParseAddr(sr.ServerAddr)
		if err != nil {
			return nil, fmt.Errorf("field \"server_addr\": %w", err)
		}
		out.serverAddr = a.Unmap()
	}
	if sr.RemoteAddr != "" {
		p, err := parsePrefix(sr.RemoteAddr)
		if err != nil {
			return nil, fmt.Errorf("field \"remote_addr\": %w", err)
		}
		out.remote = &p
	}
	return out, nil
}

// needsSNI reports whether any stream route matches on SNI.
func (s *snapshot) needsSNI() bool {
	for _, r := range s.streamRoutes {
		if r.sni != "" {
			return true
		}
	}
	return false
}

// streamByID returns the stream route id (listener filter chains).
func (s *snapshot) streamByID(id string) *streamRoute {
	for _, r := range s.streamRoutes {
		if r.id == id {
			return r
		}
	}
	return nil
}

// findStream returns the first stream route (by id order) whose
// server_port, server_addr, remote_addr and sni all match c.
func (s *snapshot) findStream(c streamConn) *streamRoute {
	for _, r := range s.streamRoutes {
		if r.serverPort != 0 && r.serverPort != int(c.local.Port()) {
			continue
		}
		if r.serverAddr.IsValid() && r.serverAddr != c.local.Addr().Unmap() {
			continue
		}
		if r.remote != nil && !r.remote.Contains(c.remote.Unmap()) {
			continue
		}
		if r.sni != "" && r.sni != strings.ToLower(c.sni) {
			continue
		}
		return r
	}
	return nil
}

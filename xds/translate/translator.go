package translate

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"
	"google.golang.org/protobuf/proto"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// Kind is an xDS resource type the Translator understands.
type Kind int

// The resource kinds, in Envoy's warming order.
const (
	// KindCluster is CDS (envoy.config.cluster.v3.Cluster).
	KindCluster Kind = iota
	// KindEndpoints is EDS (ClusterLoadAssignment).
	KindEndpoints
	// KindListener is LDS (envoy.config.listener.v3.Listener).
	KindListener
	// KindRouteConfig is RDS (RouteConfiguration).
	KindRouteConfig
	// KindSecret is SDS (envoy.extensions.transport_sockets.tls.v3.Secret).
	KindSecret
	numKinds
)

// Kinds lists every Kind in Envoy's warming order (CDS, EDS, LDS, RDS, SDS).
var Kinds = [...]Kind{KindCluster, KindEndpoints, KindListener, KindRouteConfig, KindSecret}

var kindNames = [...]string{"cluster", "endpoints", "listener", "route_config", "secret"}
var kindURLs = [...]string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType, resourcev3.SecretType}

// String is the kind name used in errors and logs.
func (k Kind) String() string {
	if k < 0 || k >= numKinds {
		return fmt.Sprintf("Kind(%d)", int(k))
	}
	return kindNames[k]
}

// TypeURL is the xDS type URL of k.
func (k Kind) TypeURL() string {
	if k < 0 || k >= numKinds {
		return ""
	}
	return kindURLs[k]
}

// KindOf maps an xDS type URL to its Kind.
func KindOf(typeURL string) (Kind, bool) {
	for i, u := range kindURLs {
		if u == typeURL {
			return Kind(i), true
		}
	}
	return 0, false
}

// NewMessage returns an empty message of the resource type of k.
func (k Kind) NewMessage() proto.Message {
	switch k {
	case KindCluster:
		return &clusterv3.Cluster{}
	case KindEndpoints:
		return &endpointv3.ClusterLoadAssignment{}
	case KindListener:
		return &listenerv3.Listener{}
	case KindRouteConfig:
		return &routev3.RouteConfiguration{}
	case KindSecret:
		return &tlsv3.Secret{}
	}
	return nil
}

// ErrInvalid is wrapped by every translation error: the resource cannot be
// honoured and must be NACKed.
var ErrInvalid = errors.New("translate: invalid resource")

// Resource is one named xDS resource of a push.
type Resource struct {
	// Name is the resource's own name (cluster_name for a load assignment).
	Name string
	// Version is the version the resource arrived with (delta: the
	// resource's own version; state of the world: the response's
	// version_info).
	Version string
	// Msg is the decoded resource (of Kind.NewMessage's type).
	Msg proto.Message
}

// Object is one translated object: the store key and its JSON value.
type Object struct {
	// Key is the store key (one of the Prefix constants and the id).
	Key string
	// Value is the object's JSON encoding.
	Value []byte
	// Source names the xDS resource the object came from ("cluster foo").
	Source string
}

// Plan is the store change that makes the store match the staged
// resources: objects to put (new or changed bytes) and keys to delete.
// The Translator is blocked on a Plan until Commit or Rollback.
type Plan struct {
	// Puts are the objects to write, new or with changed bytes.
	Puts []Object
	// Deletes are the keys to delete.
	Deletes []string
	// Warnings name the fields the translation ignored.
	Warnings []string

	t    *Translator
	undo []func()
}

// Empty reports whether the plan changes nothing in the store.
func (p *Plan) Empty() bool { return len(p.Puts) == 0 && len(p.Deletes) == 0 }

// Commit makes the staged resources the Translator's current state; call
// it once the plan has been written to the store.
func (p *Plan) Commit() {
	p.undo = nil
	p.t.staged = nil
}

// Rollback restores the state from before Stage; call it when the plan
// could not be written (the push is NACKed).
func (p *Plan) Rollback() {
	for i := len(p.undo) - 1; i >= 0; i-- {
		p.undo[i]()
	}
	p.undo = nil
	p.t.staged = nil
}

type resKey struct {
	kind Kind
	name string
}

type entry struct {
	version string
	msg     proto.Message
}

// unit is a resource that owns translated objects (a cluster, listener,
// route configuration or secret). Endpoints own nothing: they feed their
// clusters' upstreams.
type unit = resKey

type unitState struct {
	out      map[string]uint64 // key -> xxhash of value
	deps     []resKey
	variants []variantRef
}

type variantRef struct {
	cluster string
	variant string
}

// Translator holds the current xDS resources and the objects they
// translated to.
type Translator struct {
	log      *slog.Logger
	res      [numKinds]map[string]*entry
	units    map[unit]*unitState
	depIndex map[resKey]map[unit]struct{}
	// variantRefs counts, per cluster, the routes needing an upstream
	// variant (route-level retries and hash policy).
	variantRefs map[string]map[string]int
	staged      *Plan
	warnings    atomic.Int64
}

// New returns an empty Translator that logs warnings to log (nil: discard).
func New(log *slog.Logger) *Translator {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := &Translator{
		log:         log,
		units:       map[unit]*unitState{},
		depIndex:    map[resKey]map[unit]struct{}{},
		variantRefs: map[string]map[string]int{},
	}
	for i := range t.res {
		t.res[i] = map[string]*entry{}
	}
	return t
}

// WarningCount is the number of ignored fields seen so far (each ignored
// field that does not change traffic is logged and counted).
func (t *Translator) WarningCount() int64 { return t.warnings.Load() }

// Has reports whether a resource of kind k named name is known.
func (t *Translator) Has(k Kind, name string) bool {
	_, ok := t.res[k][name]
	return ok
}

// Names lists the known resources of kind k, sorted.
func (t *Translator) Names(k Kind) []string {
	out := make([]string, 0, len(t.res[k]))
	for n := range t.res[k] {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Version is the version a resource arrived with ("" when unknown).
func (t *Translator) Version(k Kind, name string) string {
	if e := t.res[k][name]; e != nil {
		return e.version
	}
	return ""
}

func setMap[K comparable, V any](undo *[]func(), m map[K]V, k K, v V, del bool) {
	old, had := m[k]
	*undo = append(*undo, func() {
		if had {
			m[k] = old
		} else {
			delete(m, k)
		}
	})
	if del {
		delete(m, k)
	} else {
		m[k] = v
	}
}

// Stage records a push of resources of kind k (upserts and removals by
// name) and returns the store change it implies. On error nothing is
// staged; the error names the resource and field and wraps ErrInvalid.
// A resource equal to the known one keeps its version and changes nothing.
func (t *Translator) Stage(k Kind, upserts []Resource, removals []string) (*Plan, error) {
	if t.staged != nil {
		return nil, errors.New("translate: Stage called with a plan outstanding")
	}
	if k < 0 || k >= numKinds {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrInvalid, int(k))
	}
	p := &Plan{t: t}
	t.staged = p
	dirty := map[unit]struct{}{}
	markRes := func(rk resKey) {
		if rk.kind != KindEndpoints {
			dirty[rk] = struct{}{}
		}
		for u := range t.depIndex[rk] {
			dirty[u] = struct{}{}
		}
	}
	m := t.res[k]
	for _, r := range upserts {
		if r.Msg == nil {
			p.Rollback()
			return nil, fmt.Errorf("%w: %s %q: empty resource", ErrInvalid, k, r.Name)
		}
		if old := m[r.Name]; old != nil && proto.Equal(old.msg, r.Msg) {
			continue
		}
		setMap(&p.undo, m, r.Name, &entry{version: r.Version, msg: r.Msg}, false)
		markRes(resKey{k, r.Name})
	}
	for _, n := range removals {
		if _, ok := m[n]; !ok {
			continue
		}
		setMap(&p.undo, m, n, nil, true)
		markRes(resKey{k, n})
	}
	if err := t.retranslate(p, dirty); err != nil {
		p.Rollback()
		return nil, err
	}
	sort.Slice(p.Puts, func(i, j int) bool { return p.Puts[i].Key < p.Puts[j].Key })
	sort.Strings(p.Deletes)
	if n := len(p.Warnings); n > 0 {
		// One line per push: 10k clusters with circuit breakers must not
		// mean 10k log lines.
		t.log.Warn("xds fields ignored", "kind", k.String(), "count", n, "examples", p.Warnings[:min(n, 3)])
	}
	t.warnings.Add(int64(len(p.Warnings)))
	return p, nil
}

// retranslate translates dirty units: route tables and listeners first
// (they decide which upstream variants exist), then clusters, then secrets.
func (t *Translator) retranslate(p *Plan, dirty map[unit]struct{}) error {
	order := make([]unit, 0, len(dirty))
	for u := range dirty {
		order = append(order, u)
	}
	rank := func(k Kind) int {
		switch k {
		case KindRouteConfig, KindListener:
			return 0
		case KindCluster:
			return 1
		}
		return 2
	}
	sort.Slice(order, func(i, j int) bool {
		ri, rj := rank(order[i].kind), rank(order[j].kind)
		if ri != rj {
			return ri < rj
		}
		if order[i].kind != order[j].kind {
			return order[i].kind < order[j].kind
		}
		return order[i].name < order[j].name
	})
	done := map[unit]struct{}{}
	variantDirty := map[string]struct{}{}
	for i := 0; i < len(order); i++ {
		u := order[i]
		if _, ok := done[u]; ok {
			continue
		}
		if u.kind == KindCluster && len(variantDirty) > 0 {
			// Clusters whose variant set changed join the work list once.
			for c := range variantDirty {
				cu := unit{KindCluster, c}
				if _, ok := done[cu]; !ok {
					if _, queued := dirty[cu]; !queued {
						dirty[cu] = struct{}{}
						order = append(order, cu)
					}
				}
			}
			variantDirty = map[string]struct{}{}
		}
		done[u] = struct{}{}
		if err := t.translateUnit(p, u, variantDirty); err != nil {
			return err
		}
	}
	for c := range variantDirty {
		cu := unit{KindCluster, c}
		if _, ok := done[cu]; ok {
			continue
		}
		done[cu] = struct{}{}
		if err := t.translateUnit(p, cu, nil); err != nil {
			return err
		}
	}
	return nil
}

// unitResult is what translating one unit produced.
type unitResult struct {
	objs     []Object
	deps     []resKey
	variants []variantRef
	warn     []string
}

func (r *unitResult) warnf(format string, args ...any) {
	r.warn = append(r.warn, fmt.Sprintf(format, args...))
}

func (r *unitResult) put(key string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("translate: encode %s: %w", key, err)
	}
	r.objs = append(r.objs, Object{Key: key, Value: b})
	return nil
}

func (t *Translator) translateUnit(p *Plan, u unit, variantDirty map[string]struct{}) error {
	var res unitResult
	var err error
	if e := t.res[u.kind][u.name]; e != nil {
		switch u.kind {
		case KindCluster:
			err = t.translateCluster(&res, u.name, e)
		case KindListener:
			err = t.translateListener(&res, u.name, e)
		case KindRouteConfig:
			err = t.translateRouteConfig(&res, u.name, e)
		case KindSecret:
			err = t.translateSecret(&res, u.name, e)
		}
	}
	if err != nil {
		return err
	}
	p.Warnings = append(p.Warnings, res.warn...)
	old := t.units[u]
	ns := &unitState{out: make(map[string]uint64, len(res.objs)), deps: res.deps, variants: res.variants}
	src := u.kind.String() + " " + strconv.Quote(u.name)
	for _, o := range res.objs {
		o.Source = src
		h := xxhash.Sum64(o.Value)
		ns.out[o.Key] = h
		if old == nil || old.out[o.Key] != h {
			p.Puts = append(p.Puts, o)
		}
	}
	if old != nil {
		for k := range old.out {
			if _, ok := ns.out[k]; !ok {
				p.Deletes = append(p.Deletes, k)
			}
		}
		for _, d := range old.deps {
			set := t.depIndex[d]
			setMap(&p.undo, set, u, struct{}{}, true)
			if len(set) == 0 {
				setMap(&p.undo, t.depIndex, d, nil, true)
			}
		}
		for _, v := range old.variants {
			t.addVariant(p, v, -1, variantDirty)
		}
	}
	for _, d := range ns.deps {
		set := t.depIndex[d]
		if set == nil {
			set = map[unit]struct{}{}
			setMap(&p.undo, t.depIndex, d, set, false)
		}
		setMap(&p.undo, set, u, struct{}{}, false)
	}
	for _, v := range ns.variants {
		t.addVariant(p, v, 1, variantDirty)
	}
	if len(ns.out) == 0 && len(ns.deps) == 0 && len(ns.variants) == 0 {
		setMap(&p.undo, t.units, u, nil, true)
	} else {
		setMap(&p.undo, t.units, u, ns, false)
	}
	return nil
}

func (t *Translator) addVariant(p *Plan, v variantRef, delta int, variantDirty map[string]struct{}) {
	m := t.variantRefs[v.cluster]
	if m == nil {
		m = map[string]int{}
		setMap(&p.undo, t.variantRefs, v.cluster, m, false)
	}
	n := m[v.variant] + delta
	if (n > 0) != (m[v.variant] > 0) && variantDirty != nil {
		variantDirty[v.cluster] = struct{}{}
	}
	setMap(&p.undo, m, v.variant, n, n <= 0)
	if len(m) == 0 {
		setMap(&p.undo, t.variantRefs, v.cluster, nil, true)
	}
}

// Keys lists the store keys of every object the current state translated
// to, sorted. Values are in the store.
func (t *Translator) Keys() []string {
	var out []string
	for _, s := range t.units {
		for k := range s.out {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func labels(name, version string) apisix.Labels {
	return apisix.Labels{
		apisix.LabelXDSName:    labelValue(name),
		apisix.LabelXDSVersion: labelValue(version),
	}
}

// Wanted lists, sorted, the names of kind k (endpoints, route
// configurations, secrets) that known resources refer to: what the ADS
// client subscribes to by name.
func (t *Translator) Wanted(k Kind) []string {
	var out []string
	for d := range t.depIndex {
		if d.kind == k {
			out = append(out, d.name)
		}
	}
	sort.Strings(out)
	return out
}

// Missing lists, sorted, the wanted names of kind k not received yet.
func (t *Translator) Missing(k Kind) []string {
	var out []string
	for _, n := range t.Wanted(k) {
		if !t.Has(k, n) {
			out = append(out, n)
		}
	}
	return out
}

// ResourceName returns the name of an xDS resource message (a cluster
// load assignment is named by its cluster_name), or "" for other types.
func ResourceName(m proto.Message) string {
	switch v := m.(type) {
	case *clusterv3.Cluster:
		return v.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return v.GetClusterName()
	case *listenerv3.Listener:
		return v.GetName()
	case *routev3.RouteConfiguration:
		return v.GetName()
	case *tlsv3.Secret:
		return v.GetName()
	}
	return ""
}

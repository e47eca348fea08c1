package apisix

// Kind is the type of a configuration object. The zero value is
// KindUnknown; every other value names one object directory.
type Kind int

// The kinds of objects this package decodes. Each maps to one directory
// under the APISIX prefix (Dir), except KindListener, which lives under
// ListenerPrefix, and KindCredential, which lives under
// <prefix>/consumers/<username>/credentials/.
const (
	KindUnknown Kind = iota
	KindRoute
	KindUpstream
	KindService
	KindSSL
	KindPluginConfig
	KindGlobalRule
	KindConsumer
	KindConsumerGroup
	KindStreamRoute
	KindPluginMetadata
	KindProto
	KindListener
	KindCredential
)

var kindNames = [...]string{
	KindUnknown:        "unknown",
	KindRoute:          "route",
	KindUpstream:       "upstream",
	KindService:        "service",
	KindSSL:            "ssl",
	KindPluginConfig:   "plugin_config",
	KindGlobalRule:     "global_rule",
	KindConsumer:       "consumer",
	KindConsumerGroup:  "consumer_group",
	KindStreamRoute:    "stream_route",
	KindPluginMetadata: "plugin_metadata",
	KindProto:          "proto",
	KindListener:       "listener",
	KindCredential:     "credential",
}

// String returns APISIX's name of the kind ("route", "plugin_config", ...).
func (k Kind) String() string {
	if k < 0 || int(k) >= len(kindNames) {
		return "unknown"
	}
	return kindNames[k]
}

// kindDirs maps a kind to its directory below the APISIX prefix. Kinds
// without a plain directory (listener, credential) are absent.
var kindDirs = map[Kind]string{
	KindRoute:          "routes",
	KindUpstream:       "upstreams",
	KindService:        "services",
	KindSSL:            "ssls",
	KindPluginConfig:   "plugin_configs",
	KindGlobalRule:     "global_rules",
	KindConsumer:       "consumers",
	KindConsumerGroup:  "consumer_groups",
	KindStreamRoute:    "stream_routes",
	KindPluginMetadata: "plugin_metadata",
	KindProto:          "protos",
}

var dirKinds = func() map[string]Kind {
	m := make(map[string]Kind, len(kindDirs))
	for k, d := range kindDirs {
		m[d] = k
	}
	return m
}()

// Dir is the kind's directory name below the APISIX prefix ("routes",
// "plugin_metadata", ...). It is "" for KindListener, KindCredential and
// KindUnknown.
func (k Kind) Dir() string { return kindDirs[k] }

// KindOfDir returns the kind stored in an APISIX directory ("routes" ->
// KindRoute), or KindUnknown.
func KindOfDir(dir string) Kind { return dirKinds[dir] }

// Kinds lists every kind this package decodes, in declaration order.
func Kinds() []Kind {
	out := make([]Kind, 0, len(kindNames)-1)
	for k := KindRoute; int(k) < len(kindNames); k++ {
		out = append(out, k)
	}
	return out
}

// Object is implemented by every decoded configuration object (*Route,
// *Upstream, ..., *Listener, *Credential). It is sealed: only this
// package's types implement it.
type Object interface {
	// Kind is the object's kind.
	Kind() Kind
	// ObjectID is the object's id (for a consumer its username, for
	// plugin metadata the plugin name, for a credential
	// "<username>/credentials/<id>").
	ObjectID() ID
	setID(ID)
}

// Kind implements Object.
func (*Route) Kind() Kind { return KindRoute }

// Kind implements Object.
func (*Upstream) Kind() Kind { return KindUpstream }

// Kind implements Object.
func (*Service) Kind() Kind { return KindService }

// Kind implements Object.
func (*SSL) Kind() Kind { return KindSSL }

// Kind implements Object.
func (*PluginConfig) Kind() Kind { return KindPluginConfig }

// Kind implements Object.
func (*GlobalRule) Kind() Kind { return KindGlobalRule }

// Kind implements Object.
func (*Consumer) Kind() Kind { return KindConsumer }

// Kind implements Object.
func (*ConsumerGroup) Kind() Kind { return KindConsumerGroup }

// Kind implements Object.
func (*StreamRoute) Kind() Kind { return KindStreamRoute }

// Kind implements Object.
func (*PluginMetadata) Kind() Kind { return KindPluginMetadata }

// Kind implements Object.
func (*Proto) Kind() Kind { return KindProto }

// Kind implements Object.
func (*Listener) Kind() Kind { return KindListener }

// Kind implements Object.
func (*Credential) Kind() Kind { return KindCredential }

// ObjectID implements Object.
func (r *Route) ObjectID() ID { return r.ID }

// ObjectID implements Object.
func (u *Upstream) ObjectID() ID { return u.ID }

// ObjectID implements Object.
func (s *Service) ObjectID() ID { return s.ID }

// ObjectID implements Object.
func (s *SSL) ObjectID() ID { return s.ID }

// ObjectID implements Object.
func (p *PluginConfig) ObjectID() ID { return p.ID }

// ObjectID implements Object.
func (g *GlobalRule) ObjectID() ID { return g.ID }

// ObjectID implements Object; a consumer is identified by its username.
func (c *Consumer) ObjectID() ID { return ID(c.Username) }

// ObjectID implements Object.
func (c *ConsumerGroup) ObjectID() ID { return c.ID }

// ObjectID implements Object.
func (s *StreamRoute) ObjectID() ID { return s.ID }

// ObjectID implements Object; plugin metadata is identified by the plugin name.
func (p *PluginMetadata) ObjectID() ID { return p.ID }

// ObjectID implements Object.
func (p *Proto) ObjectID() ID { return p.ID }

// ObjectID implements Object.
func (l *Listener) ObjectID() ID { return l.ID }

// ObjectID implements Object.
func (c *Credential) ObjectID() ID { return c.ID }

func (r *Route) setID(id ID)          { r.ID = id }
func (u *Upstream) setID(id ID)       { u.ID = id }
func (s *Service) setID(id ID)        { s.ID = id }
func (s *SSL) setID(id ID)            { s.ID = id }
func (p *PluginConfig) setID(id ID)   { p.ID = id }
func (g *GlobalRule) setID(id ID)     { g.ID = id }
func (c *Consumer) setID(id ID)       { c.ID = id }
func (c *ConsumerGroup) setID(id ID)  { c.ID = id }
func (s *StreamRoute) setID(id ID)    { s.ID = id }
func (p *PluginMetadata) setID(id ID) { p.ID = id }
func (p *Proto) setID(id ID)          { p.ID = id }
func (l *Listener) setID(id ID)       { l.ID = id }
func (c *Credential) setID(id ID)     { c.ID = id }

// newObject returns a new zero object of the kind, or nil.
func newObject(k Kind) Object {
	switch k {
	case KindRoute:
		return &Route{}
	case KindUpstream:
		return &Upstream{}
	case KindService:
		return &Service{}
	case KindSSL:
		return &SSL{}
	case KindPluginConfig:
		return &PluginConfig{}
	case KindGlobalRule:
		return &GlobalRule{}
	case KindConsumer:
		return &Consumer{}
	case KindConsumerGroup:
		return &ConsumerGroup{}
	case KindStreamRoute:
		return &StreamRoute{}
	case KindPluginMetadata:
		return &PluginMetadata{}
	case KindProto:
		return &Proto{}
	case KindListener:
		return &Listener{}
	case KindCredential:
		return &Credential{}
	}
	return nil
}

var (
	_ Object = (*Route)(nil)
	_ Object = (*Upstream)(nil)
	_ Object = (*Service)(nil)
	_ Object = (*SSL)(nil)
	_ Object = (*PluginConfig)(nil)
	_ Object = (*GlobalRule)(nil)
	_ Object = (*Consumer)(nil)
	_ Object = (*ConsumerGroup)(nil)
	_ Object = (*StreamRoute)(nil)
	_ Object = (*PluginMetadata)(nil)
	_ Object = (*Proto)(nil)
	_ Object = (*Listener)(nil)
	_ Object = (*Credential)(nil)
)

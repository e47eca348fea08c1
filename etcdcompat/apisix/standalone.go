package apisix

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Standalone is a parsed APISIX standalone configuration (apisix.yaml, for
// deployment.role_data_plane.config_provider: yaml). Every item has been
// strictly decoded and validated like an object read from etcd, and
// carries its id. A Standalone is immutable once returned.
type Standalone struct {
	Routes         []*Route
	Upstreams      []*Upstream
	Services       []*Service
	SSLs           []*SSL
	PluginConfigs  []*PluginConfig
	GlobalRules    []*GlobalRule
	Consumers      []*Consumer
	Credentials    []*Credential
	ConsumerGroups []*ConsumerGroup
	StreamRoutes   []*StreamRoute
	PluginMetadata []*PluginMetadata
	Protos         []*Proto
	// Plugins is the optional top-level list of enabled plugins.
	Plugins []PluginListItem

	items []StandaloneItem
}

// PluginListItem is one entry of the enabled-plugin list (schema_def.lua
// plugins).
type PluginListItem struct {
	Name   string `json:"name"`
	Stream bool   `json:"stream,omitempty"`
}

func (p *PluginListItem) check(path string, present fieldSet) error {
	if !present.has("name") || p.Name == "" {
		return fieldErr(path, "name", "is required")
	}
	return nil
}

// StandaloneItem is one object of a standalone file in store form: its
// kind, id, the JSON written to the store (id set) and the decoded object.
type StandaloneItem struct {
	Kind   Kind
	ID     string
	JSON   []byte
	Object Object
}

// Items returns every object of the file in file order, section by
// section. The slice must not be modified.
func (s *Standalone) Items() []StandaloneItem { return s.items }

// StandaloneError names the item of a standalone file that was rejected:
// its section, index, id (if known) and line.
type StandaloneError struct {
	Section string
	Index   int
	ID      string
	Line    int
	Err     error
}

// Error returns `apisix: standalone: <section>[<i>] (id "<id>", line <n>): <path>: <rule>`.
func (e *StandaloneError) Error() string {
	var b strings.Builder
	b.WriteString("apisix: standalone: ")
	b.WriteString(e.Section)
	if e.Index >= 0 {
		b.WriteString("[" + strconv.Itoa(e.Index) + "]")
	}
	b.WriteString(" (")
	if e.ID != "" {
		b.WriteString("id " + strconv.Quote(e.ID) + ", ")
	}
	b.WriteString("line " + strconv.Itoa(e.Line) + "): ")
	var fe *FieldError
	if errors.As(e.Err, &fe) {
		b.WriteString(fe.Error())
	} else {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns the underlying error (a ValidationError for bad items).
func (e *StandaloneError) Unwrap() error { return e.Err }

// standaloneSections maps the top-level keys of apisix.yaml to kinds, in
// the order items are reported.
var standaloneSections = []struct {
	name string
	kind Kind
}{
	{"routes", KindRoute}, {"upstreams", KindUpstream}, {"services", KindService},
	{"ssls", KindSSL}, {"plugin_configs", KindPluginConfig}, {"global_rules", KindGlobalRule},
	{"consumers", KindConsumer}, {"consumer_groups", KindConsumerGroup},
	{"stream_routes", KindStreamRoute}, {"plugin_metadata", KindPluginMetadata}, {"protos", KindProto},
}

var endFlagRe = regexp.MustCompile(`#END\s*$`)

// LoadStandalone parses and validates an apisix.yaml. Like APISIX it
// refuses a file whose last 10 bytes do not match `#END\s*$`
// (ErrNoEndMarker). Items are validated like objects read from etcd; an
// item without id gets APISIX's fallback id "arr_<position>" (1-based)
// unless its kind requires an id (plugin_configs, global_rules,
// consumer_groups, plugin_metadata); consumers are keyed by username and
// credentials by their "<username>/credentials/<id>" id. Duplicate ids in
// a section are an error. Errors are *StandaloneError naming the item.
func LoadStandalone(data []byte) (*Standalone, error) {
	if !endFlagRe.Match(tail10(data)) {
		return nil, ErrNoEndMarker
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("apisix: standalone: %w", err)
	}
	s := &Standalone{}
	if doc.Kind == 0 {
		return s, nil // only comments
	}
	root := doc.Content[0]
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return s, nil
	}
	if root.Kind != yaml.MappingNode {
		return nil, &StandaloneError{Section: "(root)", Index: -1, Line: root.Line, Err: errors.New("must be a mapping of sections")}
	}
	sections := map[string]*yaml.Node{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		if _, dup := sections[name]; dup {
			return nil, &StandaloneError{Section: name, Index: -1, Line: k.Line, Err: errors.New("duplicate section")}
		}
		sections[name] = v
		if !knownSection(name) {
			return nil, &StandaloneError{Section: name, Index: -1, Line: k.Line, Err: errors.New("unknown section (allowed: routes, upstreams, services, ssls, plugin_configs, global_rules, consumers, consumer_groups, stream_routes, plugin_metadata, protos, plugins, <section>_conf_version)")}
		}
	}
	if n := sections["plugins"]; n != nil {
		if err := s.loadPlugins(n); err != nil {
			return nil, err
		}
	}
	for _, sec := range standaloneSections {
		n := sections[sec.name]
		if n == nil || n.ShortTag() == "!!null" {
			continue
		}
		if err := s.loadSection(sec.name, sec.kind, resolveAlias(n)); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// tail10 is the part of a file APISIX searches for the end marker.
func tail10(data []byte) []byte {
	if len(data) > 10 {
		return data[len(data)-10:]
	}
	return data
}

func knownSection(name string) bool {
	if name == "plugins" {
		return true
	}
	base, isVersion := strings.CutSuffix(name, "_conf_version")
	for _, sec := range standaloneSections {
		if sec.name == name || isVersion && sec.name == base {
			return true
		}
	}
	return isVersion && base == "plugins"
}

func (s *Standalone) loadPlugins(n *yaml.Node) error {
	js, err := yamlJSON(n)
	if err != nil {
		return &StandaloneError{Section: "plugins", Index: -1, Line: n.Line, Err: err}
	}
	var list []PluginListItem
	if err := decodeStrict(js, &list); err != nil {
		return &StandaloneError{Section: "plugins", Index: -1, Line: n.Line, Err: err}
	}
	s.Plugins = list
	return nil
}

func (s *Standalone) loadSection(name string, kind Kind, n *yaml.Node) error {
	if n.Kind != yaml.SequenceNode {
		return &StandaloneError{Section: name, Index: -1, Line: n.Line, Err: errors.New("must be a list")}
	}
	seen := map[string]int{}
	for i, itemNode := range n.Content {
		itemNode = resolveAlias(itemNode)
		serr := func(id string, err error) error {
			return &StandaloneError{Section: name, Index: i, ID: id, Line: itemNode.Line, Err: err}
		}
		if itemNode.Kind != yaml.MappingNode {
			return serr("", errors.New("must be an object"))
		}
		js, err := yamlJSON(itemNode)
		if err != nil {
			return serr("", err)
		}
		k := kind
		if kind == KindConsumer && isCredentialItem(itemNode) {
			k = KindCredential
		}
		obj, err := decodeObject(k, js)
		if err != nil {
			return serr(string(peekID(itemNode)), err)
		}
		id := string(obj.ObjectID())
		switch {
		case k == KindConsumer:
			// keyed by username
		case id == "" && requiresID(k):
			return serr("", &FieldError{Path: "id", Rule: "is required"})
		case id == "":
			id = "arr_" + strconv.Itoa(i+1)
		}
		if j, dup := seen[id]; dup {
			return serr(id, fmt.Errorf("duplicate id %q (also %s[%d])", id, name, j))
		}
		seen[id] = i
		obj.setID(ID(id))
		if k != KindConsumer {
			js = withID(js, id)
		}
		s.add(StandaloneItem{Kind: k, ID: id, JSON: js, Object: obj})
	}
	return nil
}

func (s *Standalone) add(it StandaloneItem) {
	s.items = append(s.items, it)
	switch o := it.Object.(type) {
	case *Route:
		s.Routes = append(s.Routes, o)
	case *Upstream:
		s.Upstreams = append(s.Upstreams, o)
	case *Service:
		s.Services = append(s.Services, o)
	case *SSL:
		s.SSLs = append(s.SSLs, o)
	case *PluginConfig:
		s.PluginConfigs = append(s.PluginConfigs, o)
	case *GlobalRule:
		s.GlobalRules = append(s.GlobalRules, o)
	case *Consumer:
		s.Consumers = append(s.Consumers, o)
	case *Credential:
		s.Credentials = append(s.Credentials, o)
	case *ConsumerGroup:
		s.ConsumerGroups = append(s.ConsumerGroups, o)
	case *StreamRoute:
		s.StreamRoutes = append(s.StreamRoutes, o)
	case *PluginMetadata:
		s.PluginMetadata = append(s.PluginMetadata, o)
	case *Proto:
		s.Protos = append(s.Protos, o)
	}
}

// isCredentialItem reports whether a consumers item is a credential
// (its id contains "/credentials/"), as APISIX's config_validate does.
func isCredentialItem(n *yaml.Node) bool {
	return strings.Contains(string(peekID(n)), "/credentials/")
}

func peekID(n *yaml.Node) ID {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == "id" && n.Content[i+1].Kind == yaml.ScalarNode {
			return ID(n.Content[i+1].Value)
		}
	}
	return ""
}

// withID returns the object js with "id" set to id (replacing any id).
func withID(js []byte, id string) []byte {
	var b bytes.Buffer
	b.Grow(len(js) + len(id) + 8)
	b.WriteString(`{"id":`)
	idb, _ := json.Marshal(id)
	b.Write(idb)
	_ = forEachMember(js, func(k string, val []byte) error {
		if k == "id" {
			return nil
		}
		kb, _ := json.Marshal(k)
		b.WriteByte(',')
		b.Write(kb)
		b.WriteByte(':')
		b.Write(val)
		return nil
	})
	b.WriteByte('}')
	return b.Bytes()
}

func resolveAlias(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	return n
}

// yamlJSON converts a YAML node to compact JSON, keeping mapping order.
func yamlJSON(n *yaml.Node) ([]byte, error) {
	var b bytes.Buffer
	budget := maxYAMLNodes
	if err := writeYAMLJSON(&b, n, 0, &budget); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// maxYAMLNodes bounds the nodes one item may expand to, so that aliases
// cannot blow up (the "billion laughs" document).
const maxYAMLNodes = 1 << 20

func writeYAMLJSON(b *bytes.Buffer, n *yaml.Node, depth int, budget *int) error {
	if depth > 100 {
		return fmt.Errorf("line %d: nesting too deep", n.Line)
	}
	if *budget--; *budget < 0 {
		return fmt.Errorf("line %d: document expands to too many nodes", n.Line)
	}
	n = resolveAlias(n)
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			b.WriteString("null")
			return nil
		}
		return writeYAMLJSON(b, n.Content[0], depth+1, budget)
	case yaml.MappingNode:
		b.WriteByte('{')
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := resolveAlias(n.Content[i])
			if k.Kind != yaml.ScalarNode {
				return fmt.Errorf("line %d: mapping keys must be scalars", k.Line)
			}
			if k.Value == "<<" && k.ShortTag() == "!!merge" {
				return fmt.Errorf("line %d: YAML merge keys are not supported", k.Line)
			}
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k.Value)
			b.Write(kb)
			b.WriteByte(':')
			if err := writeYAMLJSON(b, n.Content[i+1], depth+1, budget); err != nil {
				return err
			}
		}
		b.WriteByte('}')
		return nil
	case yaml.SequenceNode:
		b.WriteByte('[')
		for i, c := range n.Content {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeYAMLJSON(b, c, depth+1, budget); err != nil {
				return err
			}
		}
		b.WriteByte(']')
		return nil
	case yaml.ScalarNode:
		switch n.ShortTag() {
		case "!!null":
			b.WriteString("null")
			return nil
		case "!!bool", "!!int", "!!float":
			var v any
			if err := n.Decode(&v); err != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
			if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
				return fmt.Errorf("line %d: %s is not a JSON number", n.Line, n.Value)
			}
			vb, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("line %d: %w", n.Line, err)
			}
			b.Write(vb)
			return nil
		}
		vb, _ := json.Marshal(n.Value)
		b.Write(vb)
		return nil
	}
	return fmt.Errorf("line %d: unsupported YAML node", n.Line)
}

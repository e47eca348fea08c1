package dataplane

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/meshagent/meshagent/dataplane/expr"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/plugins"
)

// pluginBuilder is the plugins.Builder of one object's build.
type pluginBuilder struct{ b *builder }

func (p pluginBuilder) Upstream(id string) (plugins.Upstream, error) {
	u, ok := p.b.upByID[id]
	if !ok {
		return nil, fmt.Errorf("upstream %q not found", id)
	}
	p.b.curDeps[id] = u.key
	return u, nil
}

func (p pluginBuilder) InlineUpstream(key string, raw json.RawMessage) (plugins.Upstream, error) {
	var u apisix.Upstream
	if err := plugins.Decode(raw, &u); err != nil {
		return nil, err
	}
	return p.b.upstream(p.b.curKey+"/"+key, &u, nil)
}

// Scope implements plugins.ScopeSource.
func (p pluginBuilder) Scope() string { return p.b.curKey }

// Consumers implements plugins.ConsumerSource.
func (p pluginBuilder) Consumers() []*plugins.Consumer { return p.b.consumers }

func (p pluginBuilder) Vars(raw json.RawMessage) (plugins.VarsMatcher, error) {
	e, err := expr.Compile(raw)
	if err != nil {
		return nil, err
	}
	return varsMatcher{e}, nil
}

// exprVarser is implemented by every request context of the data plane.
type exprVarser interface{ exprVars() expr.Vars }

type varsMatcher struct{ e *expr.Expr }

func (m varsMatcher) Match(c plugins.Ctx) bool {
	if v, ok := c.(exprVarser); ok {
		return m.e.Match(v.exprVars())
	}
	return false
}

// buildConsumers returns the consumers sorted by username, with their
// credentials' plugins merged in, and a fingerprint of their revisions
// (filters capture consumers at build time, so routes rebuild on change).
func buildConsumers(objs *objects) ([]*plugins.Consumer, string) {
	var fp strings.Builder
	byName := map[string]*plugins.Consumer{}
	var out []*plugins.Consumer
	for _, o := range sortedObjs(objs.consumers) {
		c := o.Value.(*apisix.Consumer)
		pc := &plugins.Consumer{Username: c.Username, GroupID: string(c.GroupID), Plugins: map[string]json.RawMessage{}}
		for n, v := range c.Plugins {
			pc.Plugins[n] = v
		}
		byName[c.Username] = pc
		out = append(out, pc)
		fmt.Fprintf(&fp, "c:%s@%d,", o.Key, o.ModRevision)
	}
	for _, o := range sortedObjs(objs.credentials) {
		// <prefix>/consumers/<username>/credentials/<id>
		parts := strings.Split(o.Key, "/")
		if len(parts) < 3 {
			continue
		}
		pc := byName[parts[len(parts)-3]]
		if pc == nil {
			continue
		}
		for n, v := range o.Value.(*apisix.Credential).Plugins {
			if _, ok := pc.Plugins[n]; !ok {
				pc.Plugins[n] = v
			}
		}
		fmt.Fprintf(&fp, "k:%s@%d,", o.Key, o.ModRevision)
	}
	return out, fp.String()
}

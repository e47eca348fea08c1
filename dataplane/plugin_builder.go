package dataplane

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/meshagent/meshagent/dataplane/expr"
	"github.com/meshagent/meshagent/etcdcompat/apisix"
	"github.com/meshagent/meshagent/etcdcompat/store"
	"github.com/meshagent/meshagent/plugins"
)

// pluginBuilder is the plugins.Builder of one object's build.
type pluginBuilder struct{ b *builder }

func (p pluginBuilder) Upstream(id string) (plugins.Upstream, error) {
	u, ok := p.b.upByID[id]
	if !ok {
		return nil, fmt.Errorf("upstream %q not found", id)
	}
	if p.b.curDeps == nil {
		p.b.curDeps = map[string]string{} // most objects look none up
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

// builtConsumer is a compiled consumer and the fingerprint of what it was
// compiled from (its object, its credentials, its group).
type builtConsumer struct {
	fp string
	c  *plugins.Consumer
}

// buildConsumers returns the consumers sorted by username, with their
// credentials' plugins merged in and their non-authentication plugins
// (the group's, overridden by the consumer's own) built as filter entries,
// plus a fingerprint of all of them (filters capture consumers at build
// time, so routes rebuild when it changes). A consumer whose plugins fail
// to build is rejected: its last good version stays in force, and a
// consumer that never compiled is left out (its requests fail
// authentication rather than run without the plugins configured for it).
func (b *builder) buildConsumers() ([]*plugins.Consumer, string) {
	creds := map[string][]store.Object{} // by username
	for _, o := range sortedObjs(b.objs.credentials) {
		// <prefix>/consumers/<username>/credentials/<id>
		parts := strings.Split(o.Key, "/")
		if len(parts) >= 3 {
			creds[parts[len(parts)-3]] = append(creds[parts[len(parts)-3]], o)
		}
	}
	var all strings.Builder
	var out []*plugins.Consumer
	b.cur.consumers = map[string]*builtConsumer{}
	for _, o := range sortedObjs(b.objs.consumers) {
		c := o.Value.(*apisix.Consumer)
		var fp strings.Builder
		fmt.Fprintf(&fp, "c:%s@%d,", o.Key, o.ModRevision)
		for _, k := range creds[c.Username] {
			fmt.Fprintf(&fp, "k:%s@%d,", k.Key, k.ModRevision)
		}
		var group *apisix.ConsumerGroup
		if c.GroupID != "" {
			if g, ok := b.objs.groups["/apisix/consumer_groups/"+string(c.GroupID)]; ok {
				group = g.Value.(*apisix.ConsumerGroup)
				fmt.Fprintf(&fp, "g:%s@%d,", g.Key, g.ModRevision)
			}
		}
		all.WriteString(fp.String())
		if old, ok := b.prev.consumerAt(o.Key); ok && old.fp == fp.String() {
			b.cur.consumers[o.Key] = old
			out = append(out, old.c)
			continue
		}
		pc, err := b.consumer(c, group, creds[c.Username])
		if err != nil {
			b.reject("consumer", c.Username, err)
			if old, ok := b.prev.consumerAt(o.Key); ok {
				b.cur.consumers[o.Key] = old // the last good version stays
				out = append(out, old.c)
			}
			continue
		}
		b.cur.consumers[o.Key] = &builtConsumer{fp: fp.String(), c: pc}
		out = append(out, pc)
	}
	return out, all.String()
}

// consumerAt returns the consumer compiled at key in s (nil-safe).
func (s *snapshot) consumerAt(key string) (*builtConsumer, bool) {
	if s == nil {
		return nil, false
	}
	c, ok := s.consumers[key]
	return c, ok
}

// consumer compiles one consumer.
func (b *builder) consumer(c *apisix.Consumer, g *apisix.ConsumerGroup, creds []store.Object) (*plugins.Consumer, error) {
	pc := &plugins.Consumer{Username: c.Username, GroupID: string(c.GroupID), Plugins: map[string]json.RawMessage{}}
	for n, v := range c.Plugins {
		pc.Plugins[n] = v
	}
	for _, o := range creds {
		for n, v := range o.Value.(*apisix.Credential).Plugins {
			if _, ok := pc.Plugins[n]; !ok {
				pc.Plugins[n] = v
			}
		}
	}
	merged := apisix.Plugins{}
	if g != nil {
		for n, v := range g.Plugins {
			merged[n] = v
		}
	}
	for n, v := range pc.Plugins {
		if p, ok := plugins.Lookup(n); ok && p.Auth {
			continue // a credential, not a plugin to run
		}
		merged[n] = v
	}
	b.curDeps, b.curKey = map[string]string{}, "consumer/"+c.Username
	es, err := b.entries(merged)
	if err != nil {
		return nil, err
	}
	pc.Entries = es
	return pc, nil
}

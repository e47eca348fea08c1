package rbac

import (
	"encoding/json"
	"fmt"
)

// Stage says when a filter is evaluated.
type Stage int

const (
	// StageNetwork is evaluated once per connection, without headers
	// (envoy.filters.network.rbac).
	StageNetwork Stage = iota
	// StageHTTP is evaluated per request (envoy.filters.http.rbac).
	StageHTTP
)

// String returns the stage's config name.
func (s Stage) String() string {
	switch s {
	case StageNetwork:
		return "network"
	case StageHTTP:
		return "http"
	}
	return fmt.Sprintf("Stage(%d)", int(s))
}

// filterJSON is Envoy's RBAC filter config (network and http variants).
type filterJSON struct {
	Rules                 json.RawMessage `json:"rules"`
	RulesStatPrefix       string          `json:"rulesStatPrefix"`
	ShadowRules           json.RawMessage `json:"shadowRules"`
	ShadowRulesStatPrefix string          `json:"shadowRulesStatPrefix"`
	StatPrefix            string          `json:"statPrefix"`
	EnforcementType       string          `json:"enforcementType"`
	TrackPerRuleStats     bool            `json:"trackPerRuleStats"`
	Matcher               json.RawMessage `json:"matcher"`
	ShadowMatcher         json.RawMessage `json:"shadowMatcher"`
	DelayDeny             json.RawMessage `json:"delayDeny"`
}

// Filter is one compiled RBAC filter.
type Filter struct {
	// Stage is when it applies.
	Stage Stage
	// Rules enforce; nil enforces nothing (Envoy: a filter without rules).
	Rules *Engine
	// Shadow rules are compiled (so bad ones are rejected) but not enforced.
	Shadow *Engine
}

// CompileFilter compiles an Envoy RBAC filter config (protojson) of stage.
func CompileFilter(field string, stage Stage, raw json.RawMessage) (*Filter, error) {
	var j filterJSON
	if err := strict(raw, &j); err != nil {
		return nil, fmt.Errorf("%w: field %q: %v", ErrInvalid, field, err)
	}
	if len(j.Matcher) > 0 || len(j.ShadowMatcher) > 0 {
		return nil, fmt.Errorf("%w: field %q: the matcher API is not supported (use rules)", ErrInvalid, field+".matcher")
	}
	switch j.EnforcementType {
	case "", "ONE_TIME_ON_FIRST_BYTE":
	default:
		return nil, fmt.Errorf("%w: field %q: only ONE_TIME_ON_FIRST_BYTE is supported", ErrInvalid, field+".enforcementType")
	}
	f := &Filter{Stage: stage}
	var err error
	if len(j.Rules) > 0 {
		if f.Rules, err = CompileRules(field+".rules", j.Rules); err != nil {
			return nil, err
		}
	}
	if len(j.ShadowRules) > 0 {
		if f.Shadow, err = CompileRules(field+".shadowRules", j.ShadowRules); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// Policy is the `rbac` config the xDS translation writes on a filter chain
// (and the `rbac` plugin's config): the chain's RBAC filters in order.
// Every filter of a stage must allow.
type Policy struct {
	network []*Filter
	http    []*Filter
}

type policyConfig struct {
	Filters []struct {
		Stage  string          `json:"stage"`
		Config json.RawMessage `json:"config"`
	} `json:"filters"`
}

// Compile compiles {"filters": [{"stage": "network"|"http", "config":
// <Envoy RBAC filter>}, ...]}; errors wrap ErrInvalid and name the field.
func Compile(raw json.RawMessage) (*Policy, error) {
	var c policyConfig
	if err := strict(raw, &c); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(c.Filters) == 0 {
		return nil, fmt.Errorf("%w: field \"filters\": must have at least 1 item", ErrInvalid)
	}
	p := &Policy{}
	for i, f := range c.Filters {
		field := fmt.Sprintf("filters[%d]", i)
		var st Stage
		switch f.Stage {
		case "network":
			st = StageNetwork
		case "http":
			st = StageHTTP
		default:
			return nil, fmt.Errorf("%w: field %q: one of network, http", ErrInvalid, field+".stage")
		}
		if len(f.Config) == 0 {
			return nil, fmt.Errorf("%w: field %q: is required", ErrInvalid, field+".config")
		}
		cf, err := CompileFilter(field+".config", st, f.Config)
		if err != nil {
			return nil, err
		}
		if st == StageNetwork {
			p.network = append(p.network, cf)
		} else {
			p.http = append(p.http, cf)
		}
	}
	return p, nil
}

// HasNetwork reports whether the policy has network-stage filters.
func (p *Policy) HasNetwork() bool { return p != nil && len(p.network) > 0 }

// HasHTTP reports whether the policy has http-stage filters.
func (p *Policy) HasHTTP() bool { return p != nil && len(p.http) > 0 }

// AllowConn evaluates the network-stage filters for a new connection.
func (p *Policy) AllowConn(c *Conn) bool {
	if p == nil {
		return true
	}
	for _, f := range p.network {
		if !f.Rules.Allowed(c, nil) {
			return false
		}
	}
	return true
}

// AllowRequest evaluates the http-stage filters for one request.
func (p *Policy) AllowRequest(c *Conn, h Headers) bool {
	if p == nil {
		return true
	}
	for _, f := range p.http {
		if !f.Rules.Allowed(c, h) {
			return false
		}
	}
	return true
}

package xds

import (
	"context"
	"fmt"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshagent/meshagent/xds/translate"
)

// This file holds what the state-of-the-world (sotw.go) and the delta
// (delta.go) ADS streams share: the receive loop, request bookkeeping,
// decoding, and committing an applied push to the known versions.

// namedKinds are subscribed by name, in warming order.
var namedKinds = []translate.Kind{translate.KindEndpoints, translate.KindRouteConfig, translate.KindSecret}

// adsResponse is what the shared receive loop reads of a
// DiscoveryResponse or a DeltaDiscoveryResponse.
type adsResponse interface {
	GetTypeUrl() string
	GetNonce() string
}

// receive runs a session's receive loop until recv or a send fails. For
// each response it marks the client connected (on the first one), looks
// up the state of the response's type (a type never requested is logged
// and skipped), records the nonce, and calls respond, which applies the
// response and sends its ACK or NACK; then resubscribe sends what changed
// in the handler's wanted names, and readiness is checked again. got
// reports whether any response arrived (the backoff then restarts from
// its minimum).
func receive[R adsResponse](ctx context.Context, c *Client, recv func() (R, error), respond func(*typeState, R) error, resubscribe func() error) (got bool, err error) {
	for {
		resp, err := recv()
		if err != nil {
			return got, fmt.Errorf("xds: receive: %w", err)
		}
		if !got {
			got = true
			c.mu.Lock()
			c.connected = true
			c.mu.Unlock()
		}
		k, ok := translate.KindOf(resp.GetTypeUrl())
		if !ok {
			c.log.Warn("xds: response of an unrequested type ignored", "type_url", resp.GetTypeUrl(), "delta", c.o.Delta)
			continue
		}
		ts := c.state(k)
		c.mu.Lock()
		ts.nonce = resp.GetNonce()
		c.mu.Unlock()
		if err := respond(ts, resp); err != nil {
			return got, err
		}
		if err := resubscribe(); err != nil {
			return got, err
		}
		c.checkReady(ctx)
	}
}

// stampLocked records that a request for ts goes out on this stream and
// returns the node identity for it: the stream's first request carries it
// (*first is then cleared), later ones nil. c.mu must be held.
func (c *Client) stampLocked(ts *typeState, first *bool) *corev3.Node {
	ts.sent = true
	if ts.state == StateIdle {
		ts.state = StateRequested
	}
	if !*first {
		return nil
	}
	*first = false
	return c.o.Node
}

// decodeAny decodes one resource of kind k.
func decodeAny(k translate.Kind, a *anypb.Any, version string) (translate.Resource, error) {
	if a.GetTypeUrl() != k.TypeURL() {
		return translate.Resource{}, fmt.Errorf("xds: resource of type %s in a %s response", a.GetTypeUrl(), k.TypeURL())
	}
	m := k.NewMessage()
	if err := a.UnmarshalTo(m); err != nil {
		return translate.Resource{}, fmt.Errorf("xds: %s resource: %w", k, err)
	}
	name := translate.ResourceName(m)
	if name == "" {
		return translate.Resource{}, fmt.Errorf("xds: %s resource without a name", k)
	}
	return translate.Resource{Name: name, Version: version, Msg: m}, nil
}

// addUnique appends r to upserts unless a resource of that name is in seen
// already, which rejects the response.
func addUnique(ts *typeState, seen map[string]struct{}, upserts []translate.Resource, r translate.Resource) ([]translate.Resource, error) {
	if _, dup := seen[r.Name]; dup {
		return upserts, fmt.Errorf("xds: %s %q appears twice in one response", ts.kind, r.Name)
	}
	seen[r.Name] = struct{}{}
	return append(upserts, r), nil
}

// nackDetail is the error_detail of a request: nil for an ACK, the apply
// error for a NACK.
func nackDetail(err error) *status.Status {
	if err == nil {
		return nil
	}
	return &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

// commit hands one push to the handler and, once applied, records the
// versions of what it upserted and forgets what it removed.
func (c *Client) commit(ctx context.Context, ts *typeState, upserts []translate.Resource, removals []string) error {
	if err := c.o.Handler.Apply(ctx, ts.kind, upserts, removals); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range upserts {
		ts.known[r.Name] = r.Version
	}
	for _, n := range removals {
		delete(ts.known, n)
	}
	return nil
}

// dropUnwanted removes resources no longer subscribed.
func (c *Client) dropUnwanted(ctx context.Context, ts *typeState, gone []string) {
	var rm []string
	for _, n := range gone {
		if _, ok := ts.known[n]; ok {
			rm = append(rm, n)
		}
	}
	if len(rm) == 0 {
		return
	}
	if err := c.commit(ctx, ts, nil, rm); err != nil {
		c.log.Error("xds: dropping unsubscribed resources failed", "type", ts.kind.String(), "err", err)
	}
}

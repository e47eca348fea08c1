package xds

import (
	"context"
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/meshagent/meshagent/xds/translate"
)

// typeResourceWrapper wraps SotW resources that carry a TTL.
const typeResourceWrapper = "type.googleapis.com/envoy.service.discovery.v3.Resource"

// namedKinds are subscribed by name, in warming order.
var namedKinds = []translate.Kind{translate.KindEndpoints, translate.KindRouteConfig, translate.KindSecret}

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

func nackDetail(err error) *status.Status {
	if err == nil {
		return nil
	}
	return &status.Status{Code: int32(codes.InvalidArgument), Message: err.Error()}
}

// sotwSession runs one state-of-the-world ADS stream. got reports whether
// any response arrived (the backoff then restarts from its minimum).
func (c *Client) sotwSession(ctx context.Context, conn *grpc.ClientConn) (got bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("xds: open ADS stream: %w", err)
	}
	first := true
	send := func(ts *typeState, names []string, nack error) error {
		c.mu.Lock()
		req := &discoveryv3.DiscoveryRequest{
			TypeUrl:       ts.kind.TypeURL(),
			VersionInfo:   ts.version,
			ResponseNonce: ts.nonce,
			ResourceNames: names,
			ErrorDetail:   nackDetail(nack),
		}
		if first {
			req.Node = c.o.Node
			first = false
		}
		ts.sent = true
		if ts.state == StateIdle {
			ts.state = StateRequested
		}
		c.mu.Unlock()
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("xds: send %s request: %w", ts.kind, err)
		}
		return nil
	}
	for _, k := range []translate.Kind{translate.KindCluster, translate.KindListener} {
		if err := send(c.state(k), nil, nil); err != nil {
			return false, err
		}
	}
	if err := c.sotwResubscribe(ctx, send); err != nil {
		return false, err
	}
	for {
		resp, err := stream.Recv()
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
			c.log.Warn("xds: response of an unrequested type ignored", "type_url", resp.GetTypeUrl())
			continue
		}
		ts := c.state(k)
		c.mu.Lock()
		ts.nonce = resp.GetNonce()
		c.mu.Unlock()
		applyErr := c.applySotw(ctx, ts, resp)
		c.decided(ts, resp.GetVersionInfo(), applyErr)
		if applyErr != nil {
			c.log.Error("xds: NACK", "type", k.String(), "version", resp.GetVersionInfo(), "nonce", resp.GetNonce(), "err", applyErr)
		} else {
			c.log.Debug("xds: ACK", "type", k.String(), "version", resp.GetVersionInfo(), "resources", len(resp.GetResources()))
		}
		var names []string
		if !ts.wildcard {
			names = ts.subs
		}
		if err := send(ts, names, applyErr); err != nil {
			return got, err
		}
		if err := c.sotwResubscribe(ctx, send); err != nil {
			return got, err
		}
		c.checkReady(ctx)
	}
}

// sotwResubscribe sends a request for each named type whose wanted set
// changed, and drops locally what is no longer wanted.
func (c *Client) sotwResubscribe(ctx context.Context, send func(*typeState, []string, error) error) error {
	for _, k := range namedKinds {
		ts := c.state(k)
		want, changed := c.wantedChange(ts)
		if !changed {
			if len(want) == 0 && len(ts.subs) > 0 && len(c.o.Handler.Wanted(k)) == 0 {
				// Nothing wanted any more: an empty request would read as a
				// wildcard, so the server keeps the stale subscription and
				// its pushes for those names are ignored.
				gone := ts.subs
				c.mu.Lock()
				ts.subs = nil
				c.mu.Unlock()
				c.dropUnwanted(ctx, ts, gone)
			}
			continue
		}
		gone := diff(ts.subs, want)
		c.mu.Lock()
		ts.subs = want
		c.mu.Unlock()
		if err := send(ts, want, nil); err != nil {
			return err
		}
		c.dropUnwanted(ctx, ts, gone)
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
	if err := c.o.Handler.Apply(ctx, ts.kind, nil, rm); err != nil {
		c.log.Error("xds: dropping unsubscribed resources failed", "type", ts.kind.String(), "err", err)
		return
	}
	c.mu.Lock()
	for _, n := range rm {
		delete(ts.known, n)
	}
	c.mu.Unlock()
}

func (c *Client) applySotw(ctx context.Context, ts *typeState, resp *discoveryv3.DiscoveryResponse) error {
	version := resp.GetVersionInfo()
	upserts := make([]translate.Resource, 0, len(resp.GetResources()))
	seen := make(map[string]struct{}, len(resp.GetResources()))
	var subs map[string]struct{}
	if !ts.wildcard {
		subs = make(map[string]struct{}, len(ts.subs))
		for _, n := range ts.subs {
			subs[n] = struct{}{}
		}
	}
	for i, a := range resp.GetResources() {
		if a.GetTypeUrl() == typeResourceWrapper {
			// A resource with a TTL, wrapped; without a body it is a
			// heartbeat for a resource already known.
			var w discoveryv3.Resource
			if err := a.UnmarshalTo(&w); err != nil {
				return fmt.Errorf("resources[%d]: %w", i, err)
			}
			if w.GetResource() == nil {
				if _, ok := ts.known[w.GetName()]; ok {
					seen[w.GetName()] = struct{}{}
				}
				continue
			}
			a = w.GetResource()
		}
		r, err := decodeAny(ts.kind, a, version)
		if err != nil {
			return fmt.Errorf("resources[%d]: %w", i, err)
		}
		if subs != nil {
			if _, ok := subs[r.Name]; !ok {
				continue // not (or no longer) subscribed
			}
		}
		if _, dup := seen[r.Name]; dup {
			return fmt.Errorf("xds: %s %q appears twice in one response", ts.kind, r.Name)
		}
		seen[r.Name] = struct{}{}
		upserts = append(upserts, r)
	}
	var removals []string
	if ts.wildcard {
		for n := range ts.known {
			if _, ok := seen[n]; !ok {
				removals = append(removals, n)
			}
		}
	}
	if err := c.o.Handler.Apply(ctx, ts.kind, upserts, removals); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range upserts {
		ts.known[r.Name] = version
	}
	for _, n := range removals {
		delete(ts.known, n)
	}
	return nil
}

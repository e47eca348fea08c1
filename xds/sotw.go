package xds

import (
	"context"
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/meshagent/meshagent/xds/translate"
)

// typeResourceWrapper wraps SotW resources that carry a TTL.
const typeResourceWrapper = "type.googleapis.com/envoy.service.discovery.v3.Resource"

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
			Node:          c.stampLocked(ts, &first),
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
	resubscribe := func() error { return c.sotwResubscribe(ctx, send) }
	if err := resubscribe(); err != nil {
		return false, err
	}
	return receive(ctx, c, stream.Recv, func(ts *typeState, resp *discoveryv3.DiscoveryResponse) error {
		applyErr := c.applySotw(ctx, ts, resp)
		c.decided(ts, resp.GetVersionInfo(), applyErr)
		if applyErr != nil {
			c.log.Error("xds: NACK", "type", ts.kind.String(), "version", resp.GetVersionInfo(), "nonce", resp.GetNonce(), "err", applyErr)
		} else {
			c.log.Debug("xds: ACK", "type", ts.kind.String(), "version", resp.GetVersionInfo(), "resources", len(resp.GetResources()))
		}
		var names []string
		if !ts.wildcard {
			names = ts.subs
		}
		return send(ts, names, applyErr)
	}, resubscribe)
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

// applySotw applies one state-of-the-world response: every resource of a
// wildcard type (those missing are removed), or the subscribed ones of a
// named type (others are ignored).
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
		if upserts, err = addUnique(ts, seen, upserts, r); err != nil {
			return err
		}
	}
	var removals []string
	if ts.wildcard {
		for n := range ts.known {
			if _, ok := seen[n]; !ok {
				removals = append(removals, n)
			}
		}
	}
	return c.commit(ctx, ts, upserts, removals)
}

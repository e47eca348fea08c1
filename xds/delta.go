package xds

import (
	"context"
	"fmt"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"

	"github.com/meshagent/meshagent/xds/translate"
)

// deltaSession runs one incremental ADS stream. On (re)connect each type
// is requested with the versions of the resources already applied, so the
// server only sends what changed.
func (c *Client) deltaSession(ctx context.Context, conn *grpc.ClientConn) (got bool, err error) {
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).DeltaAggregatedResources(sctx)
	if err != nil {
		return false, fmt.Errorf("xds: open delta ADS stream: %w", err)
	}
	first := true
	send := func(req *discoveryv3.DeltaDiscoveryRequest, ts *typeState) error {
		c.mu.Lock()
		req.Node = c.stampLocked(ts, &first)
		c.mu.Unlock()
		if err := stream.Send(req); err != nil {
			return fmt.Errorf("xds: send %s delta request: %w", ts.kind, err)
		}
		return nil
	}
	initial := func(ts *typeState, names []string) *discoveryv3.DeltaDiscoveryRequest {
		c.mu.Lock()
		defer c.mu.Unlock()
		iv := map[string]string{}
		for n, v := range ts.known {
			iv[n] = v
		}
		return &discoveryv3.DeltaDiscoveryRequest{TypeUrl: ts.kind.TypeURL(), ResourceNamesSubscribe: names, InitialResourceVersions: iv}
	}
	for _, k := range []translate.Kind{translate.KindCluster, translate.KindListener} {
		ts := c.state(k)
		if err := send(initial(ts, nil), ts); err != nil {
			return false, err
		}
	}
	resubscribe := func() error {
		for _, k := range namedKinds {
			ts := c.state(k)
			want := c.o.Handler.Wanted(k)
			if !ts.sent {
				if len(want) == 0 {
					continue // never open a named type with an empty (wildcard) request
				}
				c.mu.Lock()
				ts.subs = want
				c.mu.Unlock()
				if err := send(initial(ts, want), ts); err != nil {
					return err
				}
				continue
			}
			sub, unsub := diff(want, ts.subs), diff(ts.subs, want)
			if len(sub) == 0 && len(unsub) == 0 {
				continue
			}
			c.mu.Lock()
			ts.subs = want
			c.mu.Unlock()
			req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: k.TypeURL(), ResourceNamesSubscribe: sub, ResourceNamesUnsubscribe: unsub}
			if err := send(req, ts); err != nil {
				return err
			}
			c.dropUnwanted(ctx, ts, unsub)
		}
		return nil
	}
	if err := resubscribe(); err != nil {
		return false, err
	}
	return receive(ctx, c, stream.Recv, func(ts *typeState, resp *discoveryv3.DeltaDiscoveryResponse) error {
		applyErr := c.applyDelta(ctx, ts, resp)
		version := resp.GetSystemVersionInfo()
		if version == "" {
			version = resp.GetNonce()
		}
		c.decided(ts, version, applyErr)
		if applyErr != nil {
			c.log.Error("xds: NACK", "type", ts.kind.String(), "nonce", resp.GetNonce(), "err", applyErr)
		}
		ack := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: ts.kind.TypeURL(), ResponseNonce: resp.GetNonce(), ErrorDetail: nackDetail(applyErr)}
		return send(ack, ts)
	}, resubscribe)
}

// applyDelta applies one incremental response: the resources it carries
// (a name without a body, or one listed as removed, is removed; a TTL
// heartbeat changes nothing).
func (c *Client) applyDelta(ctx context.Context, ts *typeState, resp *discoveryv3.DeltaDiscoveryResponse) error {
	var upserts []translate.Resource
	var removals []string
	seen := map[string]struct{}{}
	for i, r := range resp.GetResources() {
		if r.GetResource() == nil {
			if r.GetTtl() != nil {
				continue // a TTL heartbeat: the resource is unchanged
			}
			// A name without a body: the resource does not exist.
			removals = append(removals, r.GetName())
			continue
		}
		res, err := decodeAny(ts.kind, r.GetResource(), r.GetVersion())
		if err != nil {
			return fmt.Errorf("resources[%d] (%s): %w", i, r.GetName(), err)
		}
		if r.GetName() != "" && r.GetName() != res.Name {
			return fmt.Errorf("xds: resources[%d]: name %q differs from the %s's own name %q", i, r.GetName(), ts.kind, res.Name)
		}
		if upserts, err = addUnique(ts, seen, upserts, res); err != nil {
			return err
		}
	}
	removals = append(removals, resp.GetRemovedResources()...)
	for _, rn := range resp.GetRemovedResourceNames() {
		removals = append(removals, rn.GetName())
	}
	return c.commit(ctx, ts, upserts, removals)
}

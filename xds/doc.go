// Package xds is meshagent's xDS client: an Aggregated Discovery Service
// (ADS) client over gRPC, state-of-the-world or delta (incremental), that
// feeds an Applier which translates resources (package xds/translate) and
// writes the result into the store as one transaction per push.
//
// It owns the protocol: node identity (presets for Istio and Kuma),
// version_info and nonce per type URL, ACK and NACK with an error_detail
// naming the resource and field, Envoy's warming order (CDS before EDS,
// LDS before RDS), subscriptions by name for EDS, RDS and SDS (an empty
// name set is never sent as a wildcard), reconnection with exponential
// backoff and jitter while the last applied config keeps serving, and
// resubscription with the known versions. It exposes the per-type sync
// status and readiness for the admin endpoint.
//
// It does not own the field mapping (xds/translate), the store, nor
// serving traffic (the data plane reads the store and never imports xds).
package xds

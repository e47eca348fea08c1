// Package translate turns xDS resources (envoy API v3: Listener,
// RouteConfiguration, Cluster, ClusterLoadAssignment, Secret) into the
// APISIX object model meshagent stores: routes, upstreams, stream routes,
// ssls and meshagent listeners, each as the exact JSON written under its
// store key.
//
// It owns the field mapping (see docs/xds-support.md), stable object ids
// derived from resource names, Envoy's warming rules at the translation
// level (an EDS cluster yields no upstream until its endpoints arrive, a
// listener waits for the RDS route tables it names) and incremental
// re-translation: a change to one resource re-translates only the objects
// that depend on it, and an object whose bytes did not change is not
// written again.
//
// It does not own the ADS protocol (package xds), the store (package
// store), nor validation of the APISIX schema (the store's Decoder).
// A Translator is not safe for concurrent use; the ADS client drives it
// from one goroutine.
package translate

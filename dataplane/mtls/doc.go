// Package mtls is meshagent's certificate and identity layer: it compiles
// the store's ssl objects (APISIX ssls, including those the xDS
// translation writes for SDS tls_certificate secrets) and meshagent
// secrets (SDS validation contexts under /meshagent/secrets/) into an
// immutable Material, publishes it through an atomic pointer (Manager),
// and builds the tls.Configs the data plane hands to its listeners and
// upstream connections.
//
// Every certificate, CA and subject-alt-name check is looked up per
// handshake (GetCertificate, GetClientCertificate, VerifyConnection) from
// the Material in force, so a new snapshot's certificates are used for
// new handshakes while established connections keep theirs: rotation
// never drops a connection.
//
// It owns: server certificate choice by SNI (exact, then "*.x.com" with
// exactly one extra label, then "*"; RSA or ECDSA by what the ClientHello
// supports), client-certificate verification (ssl.client.ca and depth, or
// a filter chain's CA secret and match_subject_alt_names), server
// identity verification for upstreams, the peer's SPIFFE identity, and
// the mapping of mesh ALPN values (Istio's istio-*, Kuma's kuma) to
// HTTP/1.1, h2 or "sniff". It does not own listeners, sockets or filter
// chain selection (package dataplane) nor authorization (plugins/rbac).
//
// Private keys never appear in logs, errors or dumps: errors name the
// object and field, never the material.
package mtls

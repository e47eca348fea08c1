// Package rbac is meshagent's role-based access control: an engine
// compiled from Envoy's RBAC filter config (the protojson the xDS
// translation keeps for envoy.filters.network.rbac and
// envoy.filters.http.rbac), evaluated per connection (network stage) and
// per request (http stage), and the `rbac` plugin (access phase, 403
// "RBAC: access denied").
//
// Supported: actions ALLOW, DENY (and LOG, which never denies); policies
// whose permissions are any, header, url_path, destination_ip,
// destination_port, destination_port_range, requested_server_name,
// and_rules, or_rules, not_rule, and whose principals are any,
// authenticated.principal_name (the peer's SPIFFE id), source_ip,
// direct_remote_ip, remote_ip, header, url_path, and_ids, or_ids, not_id.
// Conditions (CEL), metadata, filter_state and the matcher API are
// rejected at compile time with the field named. A filter without rules
// enforces nothing; an ALLOW rule set with no matching policy denies
// (Kuma's and Istio's default deny once a policy exists); shadow rules are
// accepted and not enforced.
//
// It owns the policy language and its evaluation. It does not own where
// the attributes come from: the data plane fills Conn (addresses, the
// peer identity from dataplane/mtls) and Headers.
//
// Engines are compiled once per snapshot, are immutable and safe for
// concurrent use; matching does not allocate.
package rbac

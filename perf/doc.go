// Package perf is meshagent's load-test harness. The work is split into
// subpackages, each one concept:
//
//   - stats: HDR latency histograms, error kinds, /proc CPU and memory
//     sampling of a target process, the machine description.
//   - backend: the servers perf itself serves (HTTP/1.1 and h2c on one port,
//     a gRPC echo service with a hand-written codec, TCP echo and bulk sink).
//   - load: the load generators (HTTP/1.1, HTTP/2, gRPC unary and streaming,
//     TCP) and the closed- and open-loop runner with warm-up and
//     coordinated-omission correction.
//   - wrk: the wrk binary as an alternative HTTP/1.1 load generator, with a
//     Lua done() script that exports its exact results, and the parser of
//     its output.
//   - target: the systems under test (direct, meshagent, nginx, haproxy),
//     each configured, started and stopped by perf on loopback.
//   - report: the text table, JSON and HTML (inline SVG) reports.
//   - scenario: the compare, churn, scale and tcp scenarios.
//
// This package owns nothing else; the command line lives in cmd/perf.
package perf

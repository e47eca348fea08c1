package external_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/meshagent/meshagent/plugins/external"
	"github.com/meshagent/meshagent/plugins/external/pluginv1"
)

// BenchmarkRequestHeadersCall measures one RequestHeaders round trip to a
// child over its unix socket, as the data plane makes it per request, and
// reports the median and p99 latency.
func BenchmarkRequestHeadersCall(b *testing.B) {
	p, err := external.Start(external.Config{Name: "bench", Path: selfB(b), Env: []string{"MESHAGENT_TEST_ROLE=good"}})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	c, err := p.Configure(ctx, []byte(`{"header":"x-b","value":"1"}`))
	if err != nil {
		b.Fatal(err)
	}
	req := &pluginv1.HTTPRequest{Method: "GET", Path: "/bench", Headers: []*pluginv1.Header{
		{Key: "host", Value: "example.com"}, {Key: "user-agent", Value: "bench"}, {Key: "accept", Value: "*/*"}}}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if _, err := c.RequestHeaders(ctx, req); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
}

func selfB(b *testing.B) string { return self(b) }

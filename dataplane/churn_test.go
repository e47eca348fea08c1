package dataplane

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// TestChurnUnderLoad applies 1,000 route and upstream changes while
// clients send requests; not one request may fail.
func TestChurnUnderLoad(t *testing.T) {
	e := newEnv(t, nil)
	b1, b2 := backend(t, "b1"), backend(t, "b2")
	e.put("/apisix/upstreams/u", `{"nodes":`+nodesJSON(b1)+`}`)
	e.put("/apisix/routes/main", `{"uri":"/churn","upstream_id":"u"}`)

	var ok, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cl := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
			for n := 0; n < 20000; n++ {
				select {
				case <-stop:
					return
				default:
				}
				r, err := cl.Get("http://" + e.http + "/churn")
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, r.Body)
				r.Body.Close()
				if r.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprint("status ", r.StatusCode))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	ctx := context.Background()
	var last int64
	for i := range 1000 {
		var key, val string
		switch i % 4 {
		case 0:
			key, val = "/apisix/upstreams/u", `{"nodes":`+nodesJSON(b2)+`}`
		case 1:
			key, val = "/apisix/upstreams/u", `{"nodes":`+nodesJSON(b1, b2)+`}`
		case 2:
			key, val = "/apisix/routes/main", fmt.Sprintf(`{"uri":"/churn","upstream_id":"u","plugins":{"proxy-rewrite":{"headers":{"set":{"X-Gen":"%d"}}}}}`, i)
		case 3:
			key, val = fmt.Sprintf("/apisix/routes/other-%d", i%50), fmt.Sprintf(`{"uri":"/other/%d","upstream_id":"u"}`, i)
		}
		r, err := e.st.Put(ctx, &pb.PutRequest{Key: []byte(key), Value: []byte(val)})
		if err != nil {
			t.Fatal(err)
		}
		last = r.Header.Revision
		if i%4 == 0 {
			time.Sleep(time.Millisecond) // spread the changes over the load
		}
	}
	e.wait(last)
	time.Sleep(50 * time.Millisecond)
	close(stop)
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d of %d requests failed during churn; first: %v", failed.Load(), ok.Load()+failed.Load(), firstErr.Load())
	}
	if ok.Load() == 0 {
		t.Fatal("no request completed")
	}
	t.Logf("%d requests, 0 failed, %d rebuilds for 1000 changes", ok.Load(), e.dp.Stats().Rebuilds.Load())
}

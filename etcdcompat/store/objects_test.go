package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
)

// route is a toy decoded object.
type route struct {
	URI string `json:"uri"`
}

var errNoURI = errors.New("uri: required")

// routeDecoder governs /apisix/routes/: JSON with a non-empty uri.
func routeDecoder(calls *atomic.Int64) Decoder {
	return func(key, value []byte) (any, error) {
		if !strings.HasPrefix(string(key), "/apisix/routes/") {
			return nil, nil
		}
		calls.Add(1)
		var r route
		if err := json.Unmarshal(value, &r); err != nil {
			return nil, fmt.Errorf("json: %w", err)
		}
		if r.URI == "" {
			return nil, errNoURI
		}
		return &r, nil
	}
}

func TestDecoderRejectionChangesNothing(t *testing.T) {
	ctx := context.Background()
	var calls atomic.Int64
	s, _ := newTest(t, Options{Decoder: routeDecoder(&calls)})
	mustPut(t, s, "/apisix/routes/1", `{"uri":"/a"}`)
	w, err := s.Watch(ctx, WatchOptions{Key: []byte{0}, RangeEnd: []byte{0}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Cancel()
	rev := s.Rev()
	bad := []struct {
		name string
		do   func() error
	}{
		{"put", func() error {
			_, err := s.Put(ctx, &pb.PutRequest{Key: []byte("/apisix/routes/1"), Value: []byte(`{"uri":""}`)})
			return err
		}},
		{"txn with one bad put", func() error {
			_, err := s.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{
				opPut("/other", "fine"),
				opDel("/apisix/routes/1", ""),
				opPut("/apisix/routes/2", `not json`),
			}})
			return err
		}},
		{"nested txn", func() error {
			_, err := s.Txn(ctx, &pb.TxnRequest{Success: []*pb.RequestOp{
				opPut("/other", "fine"),
				opTxn(&pb.TxnRequest{Success: []*pb.RequestOp{opPut("/apisix/routes/3", `{}`)}}),
			}})
			return err
		}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.do()
			var ioe *InvalidObjectError
			if !errors.As(err, &ioe) || !strings.HasPrefix(ioe.Key, "/apisix/routes/") {
				t.Fatalf("err = %v, want *InvalidObjectError", err)
			}
			if s.Rev() != rev {
				t.Fatal("rejected write bumped the revision")
			}
		})
	}
	if kv := mustGet(t, s, "/apisix/routes/1"); string(kv.Value) != `{"uri":"/a"}` || mustGet(t, s, "/other") != nil {
		t.Fatal("rejected write changed data")
	}
	objs, _ := s.Objects("/apisix/routes/")
	if len(objs) != 1 || objs[0].Value.(*route).URI != "/a" {
		t.Fatalf("objects after rejections: %+v", objs)
	}
	noRecv(t, w)
	// Ungoverned keys are stored as they are.
	mustPut(t, s, "/apisix/other", "anything")
	if r := recv(t, w); len(r.Events) != 1 {
		t.Fatalf("events: %v", evSummary(r.Events))
	}
}

func TestObjectsAndWatchObjects(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	s, _ := newTest(t, Options{Decoder: routeDecoder(&calls)})
	mustPut(t, s, "/apisix/routes/1", `{"uri":"/one"}`)
	mustPut(t, s, "/apisix/routes/2", `{"uri":"/two"}`)
	mustPut(t, s, "/apisix/upstreams/1", `{}`)
	objs, rev := s.Objects("/apisix/routes/")
	if len(objs) != 2 || rev != s.Rev() || objs[0].Key != "/apisix/routes/1" || objs[1].Value.(*route).URI != "/two" {
		t.Fatalf("objects: %+v at %d", objs, rev)
	}

	const watchers = 20
	var mu sync.Mutex
	got := make([][]ObjectEvent, watchers)
	for i := 0; i < watchers; i++ {
		s.WatchObjects(ctx, "/apisix/routes/", rev, func(evs []ObjectEvent) {
			mu.Lock()
			got[i] = append(got[i], evs...)
			mu.Unlock()
		})
	}
	before := calls.Load()
	mustPut(t, s, "/apisix/routes/3", `{"uri":"/three"}`)
	mustPut(t, s, "/apisix/upstreams/2", `{}`)
	if _, err := s.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("/apisix/routes/1")}); err != nil {
		t.Fatal(err)
	}
	// ignore_value reuses the decoded object: no decode at all.
	if _, err := s.Put(ctx, &pb.PutRequest{Key: []byte("/apisix/routes/2"), IgnoreValue: true}); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load() - before; n != 1 {
		t.Fatalf("decoder called %d times for 1 decodable write and %d watchers", n, watchers)
	}
	want := []string{"put /apisix/routes/3 /three", "del /apisix/routes/1", "put /apisix/routes/2 /two"}
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; i < watchers; i++ {
		for {
			mu.Lock()
			evs := append([]ObjectEvent(nil), got[i]...)
			mu.Unlock()
			if len(evs) >= len(want) || time.Now().After(deadline) {
				if s := objSummary(evs); !reflect.DeepEqual(s, want) {
					t.Fatalf("watcher %d got %v, want %v", i, s, want)
				}
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
}

// TestWatchObjectsResync: a consumer far behind a compaction gets the
// difference to the current state and converges.
func TestWatchObjectsResync(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	s, _ := newTest(t, Options{Decoder: routeDecoder(&calls), HistoryLimit: 10})
	mustPut(t, s, "/apisix/routes/1", `{"uri":"/one"}`)
	mustPut(t, s, "/apisix/routes/2", `{"uri":"/two"}`)
	_, rev := s.Objects("/apisix/routes/")
	release := make(chan struct{})
	view := map[string]string{"/apisix/routes/1": "/one", "/apisix/routes/2": "/two"}
	var mu sync.Mutex
	first := true
	s.WatchObjects(ctx, "/apisix/routes/", rev, func(evs []ObjectEvent) {
		if first {
			first = false
			<-release // stall while history moves on
		}
		mu.Lock()
		defer mu.Unlock()
		for _, ev := range evs {
			if ev.Deleted {
				delete(view, ev.Key)
			} else {
				view[ev.Key] = ev.Value.(*route).URI
			}
		}
	})
	mustPut(t, s, "/apisix/routes/3", `{"uri":"/3"}`)
	time.Sleep(20 * time.Millisecond) // the watcher takes the first batch and stalls
	if _, err := s.DeleteRange(ctx, &pb.DeleteRangeRequest{Key: []byte("/apisix/routes/1")}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 60; i++ {
		mustPut(t, s, "/apisix/routes/4", fmt.Sprintf(`{"uri":"/v%d"}`, i))
	}
	close(release)
	want := map[string]string{"/apisix/routes/2": "/two", "/apisix/routes/3": "/3", "/apisix/routes/4": "/v59"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		ok := reflect.DeepEqual(view, want)
		cur := fmt.Sprint(view)
		mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("view %s, want %v", cur, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func objSummary(evs []ObjectEvent) []string {
	out := make([]string, len(evs))
	for i, ev := range evs {
		if ev.Deleted {
			out[i] = "del " + ev.Key
		} else {
			out[i] = "put " + ev.Key + " " + ev.Value.(*route).URI
		}
	}
	return out
}

// TestWatchObjectsFromZero: a consumer that knows nothing (rev 0) first
// gets every current object, then the changes.
func TestWatchObjectsFromZero(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var calls atomic.Int64
	s, _ := newTest(t, Options{Decoder: routeDecoder(&calls)})
	mustPut(t, s, "/apisix/routes/1", `{"uri":"/one"}`)
	mustPut(t, s, "/apisix/routes/2", `{"uri":"/two"}`)
	var mu sync.Mutex
	var got []ObjectEvent
	s.WatchObjects(ctx, "/apisix/routes/", 0, func(evs []ObjectEvent) {
		mu.Lock()
		got = append(got, evs...)
		mu.Unlock()
	})
	mustPut(t, s, "/apisix/routes/3", `{"uri":"/three"}`)
	want := []string{"put /apisix/routes/1 /one", "put /apisix/routes/2 /two", "put /apisix/routes/3 /three"}
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		sum := objSummary(got)
		mu.Unlock()
		if reflect.DeepEqual(sum, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("got %v, want %v", sum, want)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

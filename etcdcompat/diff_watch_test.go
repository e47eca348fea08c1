package etcdcompat

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/etcd/api/v3/etcdserverpb"
	"go.etcd.io/etcd/server/v3/etcdserver/api/v3rpc"
)

// watchSession is one gRPC watch stream of a side.
type watchSession struct {
	s      *side
	stream pb.Watch_WatchClient
	cancel context.CancelFunc
}

func (s *side) openWatch(t *testing.T) *watchSession {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	st, err := s.watch.Watch(ctx)
	if err != nil {
		cancel()
		t.Fatalf("%s: watch: %v", s.name, err)
	}
	t.Cleanup(cancel)
	return &watchSession{s: s, stream: st, cancel: cancel}
}

func (w *watchSession) send(t *testing.T, r *pb.WatchRequest) {
	t.Helper()
	if err := w.stream.Send(r); err != nil {
		t.Fatalf("%s: watch send: %v", w.s.name, err)
	}
}

// recv reads n messages (normalized), failing after a timeout.
func (w *watchSession) recv(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for len(out) < n {
		m, err := w.recvOne(t, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: watch recv after %v: %v", w.s.name, out, err)
		}
		out = append(out, w.s.res(m, nil))
	}
	return out
}

func (w *watchSession) recvOne(t *testing.T, d time.Duration) (*pb.WatchResponse, error) {
	type r struct {
		m   *pb.WatchResponse
		err error
	}
	ch := make(chan r, 1)
	go func() {
		m, err := w.stream.Recv()
		ch <- r{m, err}
	}()
	select {
	case x := <-ch:
		return x.m, x.err
	case <-time.After(d):
		return nil, fmt.Errorf("timeout after %v", d)
	}
}

// recvEvents reads messages until n events arrived and returns the events
// (normalized) and the checks that every message's header revision covers
// its events. Batching of catch-up events may differ from etcd, which the
// contract allows as long as a revision is never split.
func (w *watchSession) recvEvents(t *testing.T, n int) string {
	t.Helper()
	var evs []string
	for len(evs) < n {
		m, err := w.recvOne(t, 5*time.Second)
		if err != nil {
			t.Fatalf("%s: watch events after %v: %v", w.s.name, evs, err)
		}
		revs := map[int64]bool{}
		for _, e := range m.Events {
			if e.Kv.ModRevision > m.Header.Revision {
				t.Errorf("%s: event at %d in message of revision %d", w.s.name, e.Kv.ModRevision, m.Header.Revision)
			}
			revs[e.Kv.ModRevision] = true
			b, _ := jsonpb.Marshal(e)
			evs = append(evs, w.s.normJSON(b))
		}
		if len(m.Events) == 0 {
			t.Fatalf("%s: unexpected message without events: %s", w.s.name, w.s.res(m, nil))
		}
	}
	return strings.Join(evs, "\n")
}

func create(key, end string, start int64, f func(*pb.WatchCreateRequest)) *pb.WatchRequest {
	c := &pb.WatchCreateRequest{Key: []byte(key), RangeEnd: []byte(end), StartRevision: start}
	if f != nil {
		f(c)
	}
	return &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CreateRequest{CreateRequest: c}}
}

func mustRes(t *testing.T, s *side, r string) {
	t.Helper()
	if strings.HasPrefix(r, "ERR") {
		t.Fatalf("%s: %s", s.name, r)
	}
}

// TestDiffWatchGRPC compares watch streams over gRPC: history replay with
// prev_kv and filters, live events, cancel, progress, invalid ranges,
// duplicate ids and compaction.
func TestDiffWatchGRPC(t *testing.T) {
	p := keyPrefix(t)
	end := string(prefixEnd(p))
	history := func(t *testing.T, s *side) string {
		for _, r := range []*pb.PutRequest{put(p+"a", "1"), put(p+"b", "2"), put(p+"a", "3")} {
			mustRes(t, s, s.res(s.call(r)))
		}
		mustRes(t, s, s.res(s.call(&pb.DeleteRangeRequest{Key: []byte(p + "b")})))
		mustRes(t, s, s.res(s.call(&pb.TxnRequest{Success: []*pb.RequestOp{reqPut(put(p+"c", "4")), reqPut(put(p+"d", "5"))}})))
		return "ok"
	}
	steps := []step{
		{"history", history},
		{"replay prev_kv", func(t *testing.T, s *side) string {
			w := s.openWatch(t)
			w.send(t, create(p, end, s.rev(1), func(c *pb.WatchCreateRequest) { c.PrevKv = true }))
			return strings.Join(w.recv(t, 1), "\n") + "\n" + w.recvEvents(t, 6)
		}},
		{"replay nodelete", func(t *testing.T, s *side) string {
			w := s.openWatch(t)
			w.send(t, create(p, end, s.rev(1), func(c *pb.WatchCreateRequest) {
				c.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NODELETE}
			}))
			return strings.Join(w.recv(t, 1), "\n") + "\n" + w.recvEvents(t, 5)
		}},
		{"replay noput", func(t *testing.T, s *side) string {
			w := s.openWatch(t)
			w.send(t, create(p, end, s.rev(1), func(c *pb.WatchCreateRequest) {
				c.Filters = []pb.WatchCreateRequest_FilterType{pb.WatchCreateRequest_NOPUT}
			}))
			return strings.Join(w.recv(t, 1), "\n") + "\n" + w.recvEvents(t, 1)
		}},
		{"single key from rev", func(t *testing.T, s *side) string {
			w := s.openWatch(t)
			w.send(t, create(p+"a", "", s.rev(2), nil))
			return strings.Join(w.recv(t, 1), "\n") + "\n" + w.recvEvents(t, 1)
		}},
		{"live, cancel, progress", func(t *testing.T, s *side) string {
			w := s.openWatch(t)
			w.send(t, create(p, end, 0, func(c *pb.WatchCreateRequest) { c.PrevKv = true }))
			w.send(t, create(p+"c", "", 0, nil))
			out := w.recv(t, 2)
			mustRes(t, s, s.res(s.call(put(p+"c", "6"))))
			out = append(out, w.recv(t, 2)...)
			// Both watchers got rev+6; order between watchers is free.
			if out[2] > out[3] {
				out[2], out[3] = out[3], out[2]
			}
			mustRes(t, s, s.res(s.call(&pb.DeleteRangeRequest{Key: []byte(p), RangeEnd: []byte(end)})))
			out = append(out, w.recv(t, 2)...)
			if out[4] > out[5] {
				out[4], out[5] = out[5], out[4]
			}
			w.send(t, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_CancelRequest{CancelRequest: &pb.WatchCancelRequest{WatchId: 1}}})
			out = append(out, w.recv(t, 1)...)
			w.send(t, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
			out = append(out, w.recv(t, 1)...)
			return strings.Join(out, "\n")
		}},
		{"invalid and duplicate", func(t *testing.T, s *side) string {
			w := s.openWatch(t)
			w.send(t, create(p+"z", p+"a", 0, nil))
			w.send(t, create(p, end, 0, func(c *pb.WatchCreateRequest) { c.WatchId = 7 }))
			w.send(t, create(p, end, 0, func(c *pb.WatchCreateRequest) { c.WatchId = 7 }))
			w.send(t, create("", "\x00", 0, nil))
			return strings.Join(w.recv(t, 4), "\n")
		}},
		{"progress without watchers is silent", func(t *testing.T, s *side) string {
			w := s.openWatch(t)
			w.send(t, &pb.WatchRequest{RequestUnion: &pb.WatchRequest_ProgressRequest{ProgressRequest: &pb.WatchProgressRequest{}}})
			w.send(t, create(p, end, 0, nil))
			return strings.Join(w.recv(t, 1), "\n")
		}},
		{"compacted start", func(t *testing.T, s *side) string {
			mustRes(t, s, s.res(s.call(put(p+"e", "7"))))
			mustRes(t, s, s.res(s.call(&pb.CompactionRequest{Revision: s.rev(8)})))
			w := s.openWatch(t)
			w.send(t, create(p, end, s.rev(2), nil))
			out := w.recv(t, 2)
			// The stream stays usable after the compacted watcher ends.
			w.send(t, create(p, end, s.rev(8), nil))
			out = append(out, w.recv(t, 2)...)
			return strings.Join(out, "\n")
		}},
	}
	runDiff(t, steps)
}

// TestDiffWatchHTTP compares /v3/watch streams: framing (one JSON object
// and newline per message), several requests in one body, the stream
// staying open after the body, compaction and decode errors.
func TestDiffWatchHTTP(t *testing.T) {
	p := keyPrefix(t)
	b64 := func(s string) string {
		b, _ := json.Marshal([]byte(s))
		return string(b)
	}
	end := string(prefixEnd(p))
	steps := []step{
		{"writes", func(t *testing.T, s *side) string {
			mustRes(t, s, s.res(s.call(put(p+"a", "1"))))
			mustRes(t, s, s.res(s.call(put(p+"b", "2"))))
			mustRes(t, s, s.res(s.call(&pb.DeleteRangeRequest{Key: []byte(p + "a")})))
			return "ok"
		}},
		{"replay then live", func(t *testing.T, s *side) string {
			body := fmt.Sprintf(`{"create_request":{"key":%s,"range_end":%s,"start_revision":"%d","prev_kv":true}}`, b64(p), b64(end), s.rev(1))
			resp, br := s.stream(t, "/v3/watch", body)
			defer resp.Body.Close()
			out := []string{fmt.Sprintf("%d %s %v", resp.StatusCode, resp.Header.Get("Content-Type"), resp.TransferEncoding)}
			out = append(out, s.readLines(t, br, 2, 5*time.Second)...)
			mustRes(t, s, s.res(s.call(put(p+"c", "3"))))
			out = append(out, s.readLines(t, br, 1, 5*time.Second)...)
			return strings.Join(out, "\n")
		}},
		{"two creates and a cancel in one body", func(t *testing.T, s *side) string {
			body := fmt.Sprintf(`{"create_request":{"key":%s,"range_end":%s}}{"create_request":{"key":%s}}`+"\n"+`{"cancel_request":{"watch_id":"0"}}`,
				b64(p), b64(end), b64(p+"c"))
			resp, br := s.stream(t, "/v3/watch", body)
			defer resp.Body.Close()
			out := s.readLines(t, br, 3, 5*time.Second)
			mustRes(t, s, s.res(s.call(put(p+"c", "4"))))
			out = append(out, s.readLines(t, br, 1, 5*time.Second)...)
			return strings.Join(out, "\n")
		}},
		{"compacted", func(t *testing.T, s *side) string {
			mustRes(t, s, s.res(s.call(&pb.CompactionRequest{Revision: s.rev(4)})))
			body := fmt.Sprintf(`{"create_request":{"key":%s,"range_end":%s,"start_revision":%d}}`, b64(p), b64(end), s.rev(2))
			resp, br := s.stream(t, "/v3/watch", body)
			defer resp.Body.Close()
			return strings.Join(s.readLines(t, br, 2, 5*time.Second), "\n")
		}},
		{"empty body waits silently", func(t *testing.T, s *side) string {
			// An empty body is an empty request stream: etcd keeps the
			// request open and sends nothing, not even headers.
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, s.base+"/v3/watch", strings.NewReader(""))
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
				return fmt.Sprintf("unexpected response %d", resp.StatusCode)
			}
			return fmt.Sprintf("deadline exceeded: %v", errors.Is(err, context.DeadlineExceeded))
		}},
		{"malformed first request", func(t *testing.T, s *side) string { return s.post(t, "/v3/watch", `{"create_request":`) }},
		{"wrong type", func(t *testing.T, s *side) string {
			return s.post(t, "/v3/watch", `{"create_request":{"key":5}}`)
		}},
		{"keepalive unknown lease", func(t *testing.T, s *side) string {
			return s.post(t, "/v3/lease/keepalive", `{"ID":424242}`)
		}},
	}
	runDiff(t, steps)
}

// stream posts body and returns the open response for reading messages.
func (s *side) stream(t *testing.T, path, body string) (*http.Response, *bufio.Reader) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.base+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	resp, err := http.DefaultClient.Do(req.WithContext(ctx))
	if err != nil {
		t.Fatalf("%s: POST %s: %v", s.name, path, err)
	}
	return resp, bufio.NewReader(resp.Body)
}

// TestDiffWatchProgressNotify compares periodic progress notifications
// (etcd's interval shortened to 300 ms on both): a quiet progress_notify
// watcher gets the current revision without events at every tick, a tick
// right after an event is skipped, other watchers of the stream get none.
func TestDiffWatchProgressNotify(t *testing.T) {
	const iv = 300 * time.Millisecond
	v3rpc.SetProgressReportInterval(iv)
	t.Cleanup(func() { v3rpc.SetProgressReportInterval(DefaultProgressNotifyInterval) })
	p := keyPrefix(t)
	end := string(prefixEnd(p))
	ss := []*side{newSide(t, "etcd", refEtcd.clientURL),
		newSide(t, "etcdcompat", startCompat(t, Options{ProgressNotifyInterval: iv}).url)}
	runDiffOn(t, ss, []step{{"progress", func(t *testing.T, s *side) string {
		w := s.openWatch(t)
		w.send(t, create(p+"other", "", 0, nil))
		w.send(t, create(p, end, 0, func(c *pb.WatchCreateRequest) { c.ProgressNotify = true }))
		out := w.recv(t, 3) // two created, one progress
		mustRes(t, s, s.res(s.call(put(p+"k", "v"))))
		out = append(out, w.recv(t, 2)...) // the event, then a progress two ticks later
		return strings.Join(out, "\n")
	}}})
}

// TestDiffWatchFragment compares a catch-up response larger than the gRPC
// message limit, sent whole or split for a watcher created with fragment.
func TestDiffWatchFragment(t *testing.T) {
	p := keyPrefix(t)
	end := string(prefixEnd(p))
	big := strings.Repeat("f", 900*1024)
	// Events are rendered without their values, which are long.
	summary := func(t *testing.T, w *watchSession, n int) string {
		var out []string
		for got := 0; got < n; {
			m, err := w.recvOne(t, 10*time.Second)
			if err != nil {
				t.Fatalf("%s: %v", w.s.name, err)
			}
			var revs []string
			for _, e := range m.Events {
				revs = append(revs, fmt.Sprintf("%d:%d", e.Kv.ModRevision-w.s.rev0, len(e.Kv.Value)))
			}
			got += len(m.Events)
			out = append(out, fmt.Sprintf("fragment=%v header=%d events=%v", m.Fragment, m.Header.Revision-w.s.rev0, revs))
		}
		return strings.Join(out, "\n")
	}
	runDiff(t, []step{
		{"writes", func(t *testing.T, s *side) string {
			for i := 0; i < 3; i++ {
				mustRes(t, s, s.res(s.call(put(fmt.Sprintf("%s%d", p, i), big))))
			}
			return "ok"
		}},
		{"whole", func(t *testing.T, s *side) string {
			w := s.openWatch(t)
			w.send(t, create(p, end, s.rev(1), nil))
			return strings.Join(w.recv(t, 1), "\n") + "\n" + summary(t, w, 3)
		}},
		{"fragmented", func(t *testing.T, s *side) string {
			w := s.openWatch(t)
			w.send(t, create(p, end, s.rev(1), func(c *pb.WatchCreateRequest) { c.Fragment = true }))
			return strings.Join(w.recv(t, 1), "\n") + "\n" + summary(t, w, 3)
		}},
	})
}

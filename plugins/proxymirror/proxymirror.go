// Package proxymirror is APISIX's proxy-mirror plugin: it sends a copy of
// sampled requests to a mirror host and ignores the mirror's answer. The
// copy is sent in the background with bounded concurrency; when the bound
// is reached, mirrors are dropped (and counted), never queued, so a slow
// mirror cannot slow the proxied traffic.
package proxymirror

import (
	"bytes"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"regexp"
	"sync/atomic"
	"time"

	"github.com/meshagent/meshagent/plugins"
)

// Name and Priority are APISIX's.
const (
	Name     = "proxy-mirror"
	Priority = 22900
)

// Config is the plugin's schema.
type Config struct {
	Host           string   `json:"host"`
	Path           string   `json:"path,omitempty"`
	PathConcatMode string   `json:"path_concat_mode,omitempty"`
	SampleRatio    *float64 `json:"sample_ratio,omitempty"`
}

// Stats are process-wide mirror counters.
var Stats struct {
	Sent, Failed, Dropped atomic.Int64
}

// maxInFlight bounds concurrent mirror requests per process.
const maxInFlight = 256

var (
	inFlight = make(chan struct{}, maxInFlight)
	client   = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 32, IdleConnTimeout: 60 * time.Second}}
	hostRe   = regexp.MustCompile(`^https?://([\da-zA-Z.-]+|\[[\da-fA-F:]+\])(:\d+)?$`)
	pathRe   = regexp.MustCompile(`^/[^?&]+$`)
)

func init() {
	plugins.Register(plugins.Plugin{Name: Name, Priority: Priority, New: New})
}

type filter struct {
	host   string
	path   string
	prefix bool
	ratio  float64
}

// New validates cfg and builds the filter.
func New(raw json.RawMessage, _ plugins.Builder) (any, error) {
	c := Config{PathConcatMode: "replace"}
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	if !hostRe.MatchString(c.Host) {
		return nil, plugins.Invalid("host", `required, "http(s)://host[:port]" without a path`)
	}
	if c.Path != "" && !pathRe.MatchString(c.Path) {
		return nil, plugins.Invalid("path", `must match ^/[^?&]+$`)
	}
	if c.PathConcatMode != "replace" && c.PathConcatMode != "prefix" {
		return nil, plugins.Invalid("path_concat_mode", `must be "replace" or "prefix"`)
	}
	f := &filter{host: c.Host, path: c.Path, prefix: c.PathConcatMode == "prefix", ratio: 1}
	if c.SampleRatio != nil {
		if *c.SampleRatio < 0.00001 || *c.SampleRatio > 1 {
			return nil, plugins.Invalid("sample_ratio", "must be from 0.00001 to 1")
		}
		f.ratio = *c.SampleRatio
	}
	return f, nil
}

// Access copies the request and mirrors it in the background.
func (f *filter) Access(c plugins.Ctx) plugins.Status {
	if f.ratio < 1 && rand.Float64() >= f.ratio {
		return plugins.Continue
	}
	select {
	case inFlight <- struct{}{}:
	default:
		Stats.Dropped.Add(1)
		return plugins.Continue
	}
	path := string(c.Path())
	if f.path != "" {
		if f.prefix {
			path = f.path + path
		} else {
			path = f.path
		}
	}
	u := f.host + path
	if q := c.Query(); len(q) > 0 {
		u += "?" + string(q)
	}
	req, err := http.NewRequest(string(c.Method()), u, bytes.NewReader(bytes.Clone(c.Body())))
	if err != nil {
		<-inFlight
		Stats.Failed.Add(1)
		return plugins.Continue
	}
	if v, ok := c.(plugins.HeaderVisitor); ok {
		v.VisitHeaders(func(k, val []byte) {
			switch string(k) {
			case "Connection", "Content-Length", "Transfer-Encoding", "Host":
				return
			}
			req.Header.Add(string(k), string(val))
		})
	}
	req.Host = string(c.Host())
	go func() {
		defer func() { <-inFlight }()
		resp, err := client.Do(req)
		if err != nil {
			Stats.Failed.Add(1)
			return
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		Stats.Sent.Add(1)
	}()
	return plugins.Continue
}

var _ plugins.Accessor = (*filter)(nil)

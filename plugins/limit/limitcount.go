package limit

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/meshagent/meshagent/plugins"
)

// limit-count: at most Count requests per key in each fixed TimeWindow
// (seconds); the quota headers tell clients where they stand.
const (
	CountName     = "limit-count"
	CountPriority = 1002
)

// CountConfig is limit-count's schema.
type CountConfig struct {
	common
	Count                int    `json:"count"`
	TimeWindow           int    `json:"time_window"`
	ShowLimitQuotaHeader *bool  `json:"show_limit_quota_header,omitempty"`
	Group                string `json:"group,omitempty"`
}

type window struct {
	start time.Time
	used  int
}

var countStates scoped[*table[window]]

func init() {
	plugins.Register(plugins.Plugin{Name: CountName, Priority: CountPriority, New: newCount})
}

type limitCount struct {
	count   int
	window  time.Duration
	key     keySpec
	code    int
	msg     string
	headers bool
	state   *table[window]
	scope   string
	now     func() time.Time
}

func newCount(raw json.RawMessage, b plugins.Builder) (any, error) {
	var c CountConfig
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	if c.Count <= 0 {
		return nil, plugins.Invalid("count", "required, must be > 0")
	}
	if c.TimeWindow <= 0 {
		return nil, plugins.Invalid("time_window", "required, must be > 0")
	}
	k, code, err := c.compile(true)
	if err != nil {
		return nil, err
	}
	f := &limitCount{count: c.Count, window: time.Duration(c.TimeWindow) * time.Second, key: k, code: code,
		msg: c.RejectedMsg, headers: c.ShowLimitQuotaHeader == nil || *c.ShowLimitQuotaHeader, now: time.Now}
	if c.Group != "" {
		// Routes sharing a group share counters (APISIX requires equal configs).
		f.scope = CountName + "|group|" + c.Group + "|" + string(raw)
	} else {
		f.scope = scopeKey(b, CountName, raw, f)
	}
	f.state = countStates.acquire(f.scope, func() *table[window] { return newTable[window](2 * f.window) })
	return f, nil
}

// Access counts the request.
func (f *limitCount) Access(c plugins.Ctx) plugins.Status {
	key := f.key.resolve(c)
	now := f.now()
	remaining, reset := 0, time.Duration(0)
	ok := false
	f.state.with(key, now, func(w *window, _ time.Time, fresh bool) {
		if fresh || now.Sub(w.start) >= f.window {
			w.start, w.used = now, 0
		}
		reset = f.window - now.Sub(w.start)
		if w.used < f.count {
			w.used++
			ok = true
		}
		remaining = f.count - w.used
	})
	if f.headers {
		c.SetResponseHeader("X-RateLimit-Limit", strconv.Itoa(f.count))
		c.SetResponseHeader("X-RateLimit-Remaining", strconv.Itoa(remaining))
		c.SetResponseHeader("X-RateLimit-Reset", strconv.Itoa(int((reset+time.Second-1)/time.Second)))
	}
	if !ok {
		return rejected(c, f.code, f.msg)
	}
	return plugins.Continue
}

// Close releases the shared state.
func (f *limitCount) Close() error {
	countStates.release(f.scope)
	return nil
}

var (
	_ plugins.Accessor = (*limitCount)(nil)
	_ plugins.Closer   = (*limitCount)(nil)
)

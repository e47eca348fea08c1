package limit

import (
	"encoding/json"
	"sync"
	"time"

	"github.com/meshagent/meshagent/plugins"
)

// limit-conn: at most Conn concurrent requests per key; up to Burst more
// are delayed, beyond that they are rejected. The log phase releases what
// the access phase took.
const (
	ConnName     = "limit-conn"
	ConnPriority = 1003
)

// ConnConfig is limit-conn's schema.
type ConnConfig struct {
	common
	Conn                int     `json:"conn"`
	Burst               int     `json:"burst"`
	DefaultConnDelay    float64 `json:"default_conn_delay"`
	OnlyUseDefaultDelay bool    `json:"only_use_default_delay,omitempty"`
}

// counters are in-flight counts per key; zero entries are deleted.
type counters struct {
	mu sync.Mutex
	m  map[string]int
}

var connStates scoped[*counters]

func init() {
	plugins.Register(plugins.Plugin{Name: ConnName, Priority: ConnPriority, New: newConn})
}

type limitConn struct {
	max, burst int
	unit       time.Duration
	onlyUnit   bool
	key        keySpec
	code       int
	msg        string
	state      *counters
	scope      string
	sleep      func(time.Duration)
}

// taken is what the access phase stashes for the log phase.
type taken struct{ key string }

func newConn(raw json.RawMessage, b plugins.Builder) (any, error) {
	var c ConnConfig
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	if c.Conn <= 0 {
		return nil, plugins.Invalid("conn", "required, must be > 0")
	}
	if c.Burst < 0 {
		return nil, plugins.Invalid("burst", "required, must be >= 0")
	}
	if c.DefaultConnDelay <= 0 {
		return nil, plugins.Invalid("default_conn_delay", "required, must be > 0")
	}
	k, code, err := c.compile(false)
	if err != nil {
		return nil, err
	}
	f := &limitConn{max: c.Conn, burst: c.Burst, unit: time.Duration(c.DefaultConnDelay * float64(time.Second)),
		onlyUnit: c.OnlyUseDefaultDelay, key: k, code: code, msg: c.RejectedMsg, sleep: time.Sleep}
	f.scope = scopeKey(b, ConnName, raw, f)
	f.state = connStates.acquire(f.scope, func() *counters { return &counters{m: map[string]int{}} })
	return f, nil
}

// Access takes one slot for the request's key.
func (f *limitConn) Access(c plugins.Ctx) plugins.Status {
	st, ok := c.(plugins.Stash)
	if !ok {
		// Without per-request state the slot could never be released.
		return plugins.RespondMessage(c, 500, "limit-conn: the data plane does not support per-request state")
	}
	key := f.key.resolve(c)
	f.state.mu.Lock()
	n := f.state.m[key] + 1
	if n > f.max+f.burst {
		f.state.mu.Unlock()
		return rejected(c, f.code, f.msg)
	}
	f.state.m[key] = n
	f.state.mu.Unlock()
	st.Stash(f, taken{key})
	if n > f.max {
		d := f.unit
		if !f.onlyUnit {
			d = f.unit * time.Duration((n-1)/f.max)
		}
		f.sleep(d)
	}
	return plugins.Continue
}

// Log releases the slot taken by Access, if any.
func (f *limitConn) Log(c plugins.Ctx) {
	st, ok := c.(plugins.Stash)
	if !ok {
		return
	}
	v, ok := st.Stashed(f)
	if !ok {
		return
	}
	key := v.(taken).key
	f.state.mu.Lock()
	if n := f.state.m[key] - 1; n > 0 {
		f.state.m[key] = n
	} else {
		delete(f.state.m, key)
	}
	f.state.mu.Unlock()
}

// Close releases the shared state.
func (f *limitConn) Close() error {
	connStates.release(f.scope)
	return nil
}

var (
	_ plugins.Accessor = (*limitConn)(nil)
	_ plugins.Logger   = (*limitConn)(nil)
	_ plugins.Closer   = (*limitConn)(nil)
)

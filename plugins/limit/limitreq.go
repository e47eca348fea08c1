package limit

import (
	"encoding/json"
	"time"

	"github.com/meshagent/meshagent/plugins"
)

// limit-req: a leaky bucket per key. Requests above Rate per second are
// delayed to that rate while the excess stays within Burst, and rejected
// beyond it (or passed at once with Nodelay).
const (
	ReqName     = "limit-req"
	ReqPriority = 1001
)

// ReqConfig is limit-req's schema.
type ReqConfig struct {
	common
	Rate    float64 `json:"rate"`
	Burst   float64 `json:"burst"`
	Nodelay bool    `json:"nodelay,omitempty"`
}

type bucket struct{ excess float64 }

var reqStates scoped[*table[bucket]]

func init() {
	plugins.Register(plugins.Plugin{Name: ReqName, Priority: ReqPriority, New: newReq})
}

type limitReq struct {
	rate, burst float64
	nodelay     bool
	key         keySpec
	code        int
	msg         string
	state       *table[bucket]
	scope       string
	now         func() time.Time
	sleep       func(time.Duration)
}

func newReq(raw json.RawMessage, b plugins.Builder) (any, error) {
	var c ReqConfig
	if err := plugins.Decode(raw, &c); err != nil {
		return nil, err
	}
	if c.Rate <= 0 {
		return nil, plugins.Invalid("rate", "required, must be > 0")
	}
	if c.Burst < 0 {
		return nil, plugins.Invalid("burst", "must be >= 0")
	}
	k, code, err := c.compile(false)
	if err != nil {
		return nil, err
	}
	f := &limitReq{rate: c.Rate, burst: c.Burst, nodelay: c.Nodelay, key: k, code: code, msg: c.RejectedMsg,
		now: time.Now, sleep: time.Sleep}
	f.scope = scopeKey(b, ReqName, raw, f)
	idle := time.Duration((c.Burst/c.Rate+2)*float64(time.Second)) + time.Minute
	f.state = reqStates.acquire(f.scope, func() *table[bucket] { return newTable[bucket](idle) })
	return f, nil
}

// Access applies the bucket.
func (f *limitReq) Access(c plugins.Ctx) plugins.Status {
	key := f.key.resolve(c)
	now := f.now()
	var delay time.Duration
	reject := false
	f.state.with(key, now, func(b *bucket, last time.Time, fresh bool) {
		excess := 0.0
		if !fresh {
			elapsed := now.Sub(last).Seconds()
			if elapsed < 0 {
				elapsed = -elapsed
			}
			excess = max(b.excess-f.rate*elapsed+1, 0)
		}
		if excess > f.burst {
			reject = true
			// The rejected request does not enter the bucket: restore it
			// so the caller's timestamp update does not drain it.
			b.excess = max(b.excess-f.rate*now.Sub(last).Seconds(), 0)
			return
		}
		b.excess = excess
		delay = time.Duration(excess / f.rate * float64(time.Second))
	})
	if reject {
		return rejected(c, f.code, f.msg)
	}
	if delay > 0 && !f.nodelay {
		f.sleep(delay)
	}
	return plugins.Continue
}

// Close releases the shared state.
func (f *limitReq) Close() error {
	reqStates.release(f.scope)
	return nil
}

var (
	_ plugins.Accessor = (*limitReq)(nil)
	_ plugins.Closer   = (*limitReq)(nil)
)

package redirect

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
)

// GateState is the lifecycle state of a Gate.
type GateState int

const (
	// GateHolding: the queue is bound and SYNs are held without a verdict.
	GateHolding GateState = iota
	// GateReleased: Ready was called; held SYNs were accepted, the gate
	// rule deleted and the queue unbound.
	GateReleased
	// GateTimedOut: the timeout fired before Ready; everything was
	// released as for GateReleased.
	GateTimedOut
	// GateAbandoned: Close was called before Ready; everything was
	// released (fail open: the app gets connection errors, not a hang).
	GateAbandoned
)

// String returns the state's name.
func (s GateState) String() string {
	switch s {
	case GateHolding:
		return "holding"
	case GateReleased:
		return "released"
	case GateTimedOut:
		return "timed-out"
	case GateAbandoned:
		return "abandoned"
	}
	return "GateState(" + strconv.Itoa(int(s)) + ")"
}

// GateOptions configures OpenGate.
type GateOptions struct {
	// Queue is the NFQUEUE number the gate rule sends SYNs to; it must
	// equal Config.GateQueue.
	Queue uint16
	// Timeout releases everything when Ready has not been called by then;
	// zero means wait for Ready or Close forever.
	Timeout time.Duration
	// Release deletes the gate rule (normally Manager.ReleaseGate). It runs
	// after the held SYNs are accepted and before the queue is unbound, so
	// no packet is ever sent to an unbound queue. Required.
	Release func(ctx context.Context) error
	// NetNS is an open file descriptor of the network namespace to bind
	// the queue in; zero means the caller's namespace.
	NetNS int
	// Logger receives state changes; nil discards them.
	Logger *slog.Logger
}

// Gate is the startup gate: it binds the NFQUEUE the gate rule feeds,
// holds the application's new outbound SYNs (no verdict, so the kernel
// keeps them queued) until Ready, then accepts them, deletes the gate rule
// and unbinds, after which no packet depends on the queue. All methods are
// safe for concurrent use.
type Gate struct {
	opts   GateOptions
	log    *slog.Logger
	nf     *nfqueue.Nfqueue
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	state    GateState
	released bool
	held     []uint32
	seen     uint64
	relErr   error
	timer    *time.Timer
}

// OpenGate binds the queue and starts holding. It needs CAP_NET_ADMIN.
func OpenGate(opts GateOptions) (*Gate, error) {
	if opts.Release == nil {
		return nil, fmt.Errorf("%w: gate: Release is required", ErrInvalidConfig)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	nf, err := nfqueue.Open(&nfqueue.Config{
		NetNS:        opts.NetNS,
		NfQueue:      opts.Queue,
		MaxPacketLen: 0,
		MaxQueueLen:  4096,
		Copymode:     nfqueue.NfQnlCopyMeta,
		WriteTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("redirect: gate: open nfqueue %d: %w", opts.Queue, err)
	}
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		_ = nf.Close()
		return nil, fmt.Errorf("redirect: gate: %w", err)
	}
	g := &Gate{opts: opts, log: log, nf: nf, done: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	err = nf.RegisterWithErrorFunc(ctx, g.hook, func(err error) int {
		if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
			return 1
		}
		log.Warn("startup gate: receive error", "err", err)
		return 0
	})
	if err != nil {
		cancel()
		_ = nf.Close()
		return nil, fmt.Errorf("redirect: gate: bind nfqueue %d: %w", opts.Queue, err)
	}
	if opts.Timeout > 0 {
		g.mu.Lock()
		g.timer = time.AfterFunc(opts.Timeout, func() {
			if err := g.release(context.Background(), GateTimedOut); err != nil {
				log.Error("startup gate: release on timeout", "err", err)
			}
		})
		g.mu.Unlock()
	}
	log.Info("startup gate bound", "queue", opts.Queue, "timeout", opts.Timeout)
	return g, nil
}

// hook runs for every queued packet: it holds it, or accepts it at once
// when the gate was already released.
func (g *Gate) hook(a nfqueue.Attribute) int {
	if a.PacketID == nil {
		return 0
	}
	id := *a.PacketID
	g.mu.Lock()
	g.seen++
	if g.released {
		g.mu.Unlock()
		if err := g.nf.SetVerdict(id, nfqueue.NfAccept); err != nil {
			g.log.Warn("startup gate: late verdict", "id", id, "err", err)
		}
		return 0
	}
	g.held = append(g.held, id)
	g.mu.Unlock()
	return 0
}

// Ready releases the gate: held SYNs are accepted (their connections then
// proceed to the proxy), the gate rule is deleted and the queue unbound.
// It returns Release's error, if any; calling it again returns the first
// result.
func (g *Gate) Ready(ctx context.Context) error { return g.release(ctx, GateReleased) }

// Close releases the gate if Ready has not been called (fail open) and
// waits until the queue is unbound.
func (g *Gate) Close() error { return g.release(context.Background(), GateAbandoned) }

// Done is closed once the gate has been released, whatever the reason.
func (g *Gate) Done() <-chan struct{} { return g.done }

// State returns the current state.
func (g *Gate) State() GateState {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.state
}

// Seen returns how many packets the queue delivered so far.
func (g *Gate) Seen() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.seen
}

// Held returns how many packets are held right now.
func (g *Gate) Held() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.held)
}

// release moves the gate to state why, once: it accepts the held packets,
// deletes the gate rule and unbinds the queue. Later calls wait for the
// first to finish and return its error.
func (g *Gate) release(ctx context.Context, why GateState) error {
	g.mu.Lock()
	if g.released {
		err := g.relErr
		g.mu.Unlock()
		<-g.done
		return err
	}
	g.released = true
	g.state = why
	held := g.held
	g.held = nil
	timer := g.timer
	g.mu.Unlock()
	if timer != nil {
		timer.Stop()
	}
	var errs []error
	for _, id := range held {
		if err := g.nf.SetVerdict(id, nfqueue.NfAccept); err != nil {
			errs = append(errs, fmt.Errorf("redirect: gate: accept packet %d: %w", id, err))
		}
	}
	// Packets queued from now until the rule is gone are accepted by hook.
	if err := g.opts.Release(ctx); err != nil {
		errs = append(errs, fmt.Errorf("redirect: gate: delete gate rule: %w", err))
	}
	// Give packets queued just before the rule went away time to reach
	// hook; unbinding drops whatever is still queued (the client's SYN
	// retransmission would then recover, one second later).
	time.Sleep(50 * time.Millisecond)
	g.cancel()
	if err := g.nf.Close(); err != nil {
		errs = append(errs, fmt.Errorf("redirect: gate: unbind: %w", err))
	}
	err := errors.Join(errs...)
	g.mu.Lock()
	g.relErr = err
	g.mu.Unlock()
	g.log.Info("startup gate released", "reason", why.String(), "held", len(held), "err", err)
	close(g.done)
	return err
}

// OpenGate opens the startup gate of m's Config in the caller's network
// namespace: queue Config.GateQueue, timeout Config.GateTimeout, releasing
// with m.ReleaseGate. The sidecar calls it before it binds its listeners
// and calls Ready once it can serve.
func (m *Manager) OpenGate() (*Gate, error) {
	if !m.cfg.Gate {
		return nil, fmt.Errorf("%w: gate: the config has no startup gate (set Gate / --gate)", ErrInvalidConfig)
	}
	return OpenGate(GateOptions{Queue: m.cfg.GateQueue, Timeout: m.cfg.GateTimeout, Release: m.ReleaseGate, Logger: m.log})
}

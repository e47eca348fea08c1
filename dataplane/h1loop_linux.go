//go:build linux

package dataplane

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/dataplane/router"
)

// The event-loop engine serves plaintext HTTP/1.1 requests of routes
// without plugins the way nginx does: one goroutine per GOMAXPROCS runs an
// edge-triggered epoll set holding client and upstream sockets, reads and
// writes with raw non-blocking system calls, and never reads a socket it
// knows to be drained. Compared with a goroutine per connection over
// fasthttp it saves the reads that would return EAGAIN, the scheduler's
// park/ready per read, and the parse-and-serialize of every header: the
// request and response heads are relayed as received, only the hop-by-hop
// and X-Forwarded-* headers rewritten, and bodies are streamed with
// backpressure (a slow client stops the upstream reads).
//
// A loop's epoll descriptor is itself registered in Go's netpoller, so an
// idle loop parks like any goroutine blocked on a socket and the rest of
// the process (health checks, xDS, admin) shares the same Ps.
//
// Everything the fast path does not do -- plugins, TLS, upgrades, unusual
// request shapes (see parseReqHead), original-destination and HTTPS/gRPC
// upstreams -- is detected before the request is consumed, and the
// connection is handed to the fasthttp engine with the bytes already read.

// h1loops is the set of event loops of a data plane.
type h1loops struct {
	d     *Dataplane
	loops []*h1loop
	next  atomic.Uint32
	wg    sync.WaitGroup
}

// newH1Loops starts n event loops.
func newH1Loops(d *Dataplane, n int) (*h1loops, error) {
	ls := &h1loops{d: d}
	for range n {
		l, err := newH1Loop(d)
		if err != nil {
			ls.close()
			return nil, err
		}
		ls.loops = append(ls.loops, l)
		ls.wg.Add(1)
		go func() {
			defer ls.wg.Done()
			l.run()
		}()
	}
	return ls, nil
}

// adopt takes over the plaintext HTTP/1.1 connection pc (its sniffed
// bytes included) and reports whether it did; false leaves pc untouched.
func (ls *h1loops) adopt(pc *peekConn, table string) bool {
	if ls == nil || len(ls.loops) == 0 {
		return false
	}
	var od *odConn
	inner := pc.Conn
	if v, ok := inner.(*odConn); ok { // captured: serves its original destination
		od, inner = v, v.Conn
	}
	tc, fd, ok := dupTCPFD(inner)
	if !ok {
		return false
	}
	c := &evConn{fd: fd, table: table, wr: true}
	c.drain, c.untrack = ls.d.servers.drains.adopt(pc)
	if a, ok := tc.RemoteAddr().(*net.TCPAddr); ok {
		ap := a.AddrPort()
		c.remoteIP, c.remotePort = ap.Addr().Unmap(), int(ap.Port())
	}
	c.remote = c.remoteIP.AppendTo(nil)
	if a, ok := tc.LocalAddr().(*net.TCPAddr); ok {
		c.local = unmapped(a.AddrPort())
	}
	if od != nil {
		c.local, c.od = od.od, true
	}
	c.localPort = strconv.AppendInt(nil, int64(c.local.Port()), 10)
	if len(pc.buf) > 0 {
		c.pre = append([]byte(nil), pc.buf...)
	}
	_ = tc.Close() // the loop's duplicate keeps the socket
	l := ls.loops[int(ls.next.Add(1))%len(ls.loops)]
	ls.d.stats.ActiveConns.Add(1)
	if !l.push(c) {
		ls.d.stats.ActiveConns.Add(-1)
		_ = unix.Close(fd)
	}
	return true
}

// close stops the loops and closes their connections.
func (ls *h1loops) close() {
	if ls == nil {
		return
	}
	for _, l := range ls.loops {
		l.stop()
	}
	ls.wg.Wait()
}

// h1loop is one event loop. Fields below mu are owned by the loop
// goroutine.
type h1loop struct {
	d    *Dataplane
	epfd int
	evfd int // eventfd: wakes the loop for adopted connections and stop
	file *os.File
	rc   syscall.RawConn

	mu      sync.Mutex
	inbox   []*evConn
	stopped bool

	conns   []*evConn // by fd
	gen     int32
	pools   map[*hostPool]*evPool
	free    [][]byte
	freeX   []*exchange
	runq    []*evConn
	base    time.Time
	now     int64 // nanoseconds since base, read once per batch
	nextDL  int64 // earliest deadline to look at
	setDL   int64 // deadline set on file
	dateSec int64
	date    []byte // "Date: ...\r\n"
	evs     [128]unix.EpollEvent
	stepFn  func(uintptr) bool // l.step, made once (a method value per Read would allocate)
	quit    bool
}

func newH1Loop(d *Dataplane) (*h1loop, error) {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("epoll_create1", err)
	}
	evfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, os.NewSyscallError("eventfd", err)
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(evfd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, evfd, &ev); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	if err := unix.SetNonblock(epfd, true); err != nil {
		unix.Close(epfd)
		unix.Close(evfd)
		return nil, err
	}
	f := os.NewFile(uintptr(epfd), "epoll")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		unix.Close(evfd)
		return nil, err
	}
	l := &h1loop{d: d, epfd: epfd, evfd: evfd, file: f, rc: rc, pools: map[*hostPool]*evPool{}, base: time.Now()}
	l.nextDL = int64(time.Hour)
	l.stepFn = l.step
	return l, nil
}

// push hands c to the loop; false once the loop is stopped.
func (l *h1loop) push(c *evConn) bool {
	l.mu.Lock()
	if l.stopped {
		l.mu.Unlock()
		return false
	}
	l.inbox = append(l.inbox, c)
	l.mu.Unlock()
	l.wake()
	return true
}

func (l *h1loop) wake() {
	one := uint64(1)
	_, _ = unix.Write(l.evfd, (*[8]byte)(unsafe.Pointer(&one))[:])
}

func (l *h1loop) stop() {
	l.mu.Lock()
	l.stopped = true
	l.mu.Unlock()
	l.wake()
}

// Raw non-blocking system calls: none of them can block, so the runtime
// need not be told (syscall.Syscall would hand the P over and back).

func rawRead(fd int, b []byte) (int, syscall.Errno) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func rawWritev(fd int, a, b []byte) (int, syscall.Errno) {
	var iov [2]unix.Iovec
	cnt := 0
	for _, p := range [2][]byte{a, b} {
		if len(p) > 0 {
			iov[cnt].Base = unsafe.SliceData(p)
			iov[cnt].SetLen(len(p))
			cnt++
		}
	}
	if cnt == 0 {
		return 0, 0
	}
	n, _, e := syscall.RawSyscall(syscall.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(cnt))
	if e != 0 {
		return 0, e
	}
	return int(n), 0
}

func (l *h1loop) poll() int {
	n, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(l.epfd), uintptr(unsafe.Pointer(&l.evs[0])), uintptr(len(l.evs)), 0, 0, 0)
	if e != 0 {
		return 0
	}
	return int(n)
}

func (l *h1loop) clock() int64 { return int64(time.Since(l.base)) }

// run is the loop. It lives inside one RawConn.Read of the epoll file:
// the callback (step) handles ready events and returns false to park in
// the netpoller until the epoll set is readable again. Since the ready
// flag is reset only when Read begins, a batch that did not fill the
// event array is known to have drained the set, and the loop parks with
// no further epoll_pwait: an edge that comes meanwhile makes Go's poller
// wake it at once. Read returns on a passed deadline (run scans the
// deadlines and reads again) and when the loop stops.
func (l *h1loop) run() {
	defer l.shutdown()
	for !l.quit {
		err := l.rc.Read(l.stepFn)
		if err == nil {
			return // step said stop
		}
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			return // the file was closed
		}
		l.now = l.clock()
		l.scan()
		l.arm() // before Read: a passed deadline fails it at once
	}
}

// arm sets the epoll file's read deadline to the next deadline.
func (l *h1loop) arm() {
	if l.setDL != l.nextDL {
		l.setDL = l.nextDL
		_ = l.file.SetReadDeadline(l.base.Add(time.Duration(l.nextDL)))
	}
}

// step handles ready events until a batch leaves the set drained; true
// stops the loop.
func (l *h1loop) step(uintptr) bool {
	for {
		n := l.poll()
		if n > 0 {
			l.now = l.clock()
			for i := range n {
				if !l.event(&l.evs[i]) {
					l.quit = true
					return true
				}
			}
			for len(l.runq) > 0 {
				c := l.runq[len(l.runq)-1]
				l.runq = l.runq[:len(l.runq)-1]
				if !c.closed && c.x == nil {
					l.serveClient(c)
				}
			}
			if l.now >= l.nextDL {
				l.scan()
			}
		}
		if n < len(l.evs) {
			l.arm()
			return false
		}
	}
}

// event handles one epoll event; false stops the loop.
func (l *h1loop) event(ev *unix.EpollEvent) bool {
	fd := int(ev.Fd)
	if fd == l.evfd {
		var b [8]byte
		_, _ = rawRead(l.evfd, b[:])
		return l.drainInbox()
	}
	if fd >= len(l.conns) {
		return true
	}
	c := l.conns[fd]
	if c == nil || c.gen != ev.Pad {
		return true
	}
	e := ev.Events
	if e&(unix.EPOLLIN|unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.rd = true
	}
	if e&(unix.EPOLLOUT|unix.EPOLLHUP|unix.EPOLLERR) != 0 {
		c.wr = true
	}
	if c.pair != nil { // a TCP stream relay (tcploop_linux.go)
		if e&unix.EPOLLRDHUP != 0 {
			c.hup = true
		}
		l.pairEvent(c.pair)
		return true
	}
	if c.isUp {
		if e&unix.EPOLLRDHUP != 0 {
			c.hup = true
		}
		l.upstreamEvent(c)
		return true
	}
	if e&(unix.EPOLLHUP|unix.EPOLLERR) != 0 && c.x != nil {
		l.abort(c, nil) // the client is gone
		return true
	}
	if e&unix.EPOLLRDHUP != 0 {
		c.hup = true
	}
	l.clientEvent(c)
	return true
}

func (l *h1loop) drainInbox() bool {
	l.mu.Lock()
	in, stopped := l.inbox, l.stopped
	l.inbox = nil
	l.mu.Unlock()
	l.now = l.clock()
	for _, c := range in {
		if stopped || !l.register(c) {
			l.d.stats.ActiveConns.Add(-1)
			unix.Close(c.fd)
			continue
		}
		if c.pair != nil {
			l.startPair(c.pair)
			continue
		}
		if len(c.pre) > 0 {
			c.rbuf = l.getBuf()
			c.rhi = copy(c.rbuf, c.pre)
			c.pre = nil
		}
		c.rd = true // bytes may have arrived since the sniff
		l.serveClient(c)
	}
	return !stopped
}

// register adds c's socket to the epoll set.
func (l *h1loop) register(c *evConn) bool {
	l.gen++
	c.gen = l.gen
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(c.fd), Pad: c.gen}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
		return false
	}
	for c.fd >= len(l.conns) {
		l.conns = append(l.conns, make([]*evConn, len(l.conns)+64)...)
	}
	l.conns[c.fd] = c
	return true
}

// unregister forgets c; the caller closes or hands over its socket.
func (l *h1loop) unregister(c *evConn) {
	c.closed = true
	if c.fd < len(l.conns) && l.conns[c.fd] == c {
		l.conns[c.fd] = nil
	}
	if c.rbuf != nil {
		l.putBuf(c.rbuf)
		c.rbuf = nil
	}
}

// evBufSize is the read buffer of a connection, and the largest request
// head the fast path takes (fasthttp answers larger ones).
const evBufSize = 16 << 10

func (l *h1loop) getBuf() []byte {
	if n := len(l.free); n > 0 {
		b := l.free[n-1]
		l.free = l.free[:n-1]
		return b
	}
	return make([]byte, evBufSize)
}

func (l *h1loop) putBuf(b []byte) {
	if len(l.free) < 256 {
		l.free = append(l.free, b[:evBufSize])
	}
}

func (l *h1loop) getExchange() *exchange {
	if n := len(l.freeX); n > 0 {
		x := l.freeX[n-1]
		l.freeX = l.freeX[:n-1]
		return x
	}
	return &exchange{}
}

func (l *h1loop) putExchange(x *exchange) {
	x.reset()
	if len(l.freeX) < 256 {
		l.freeX = append(l.freeX, x)
	}
}

// setDeadline sets c's deadline d from now (0: none).
func (l *h1loop) setDeadline(c *evConn, d time.Duration) {
	if d <= 0 {
		c.deadline = 0
		return
	}
	c.deadline = l.now + int64(d)
	if c.deadline < l.nextDL {
		l.nextDL = max(c.deadline, l.now+int64(deadlineSlack))
	}
}

// deadlineSlack is the resolution of the loop's deadlines: scans (a pass
// over every connection) come at most that often, however many
// connections time out one after another.
const deadlineSlack = 20 * time.Millisecond

// scan expires deadlines and computes the next one.
func (l *h1loop) scan() {
	l.nextDL = l.now + int64(10*time.Second) // setDeadline lowers it
	for _, c := range l.conns {
		if c == nil || c.deadline == 0 {
			continue
		}
		if c.deadline <= l.now {
			c.deadline = 0
			l.expire(c)
			continue
		}
		if c.deadline < l.nextDL {
			l.nextDL = c.deadline
		}
	}
	l.nextDL = max(l.nextDL, l.now+int64(deadlineSlack))
}

// expire handles a passed deadline.
func (l *h1loop) expire(c *evConn) {
	if c.pair != nil {
		l.pairExpired(c.pair)
		return
	}
	if !c.isUp {
		if c.x == nil {
			l.closeClient(c) // idle keep-alive or a head that never completed
			return
		}
		l.abort(c, nil) // the client stopped reading the response
		return
	}
	o := c.owner
	switch {
	case o == nil:
		l.closeUp(c) // idle in its pool
	case c.state == usConnecting:
		l.tryFailed(o, &connectError{errConnectTimeout})
	case o.x.started:
		l.abort(o, os.ErrDeadlineExceeded)
	default:
		l.tryFailed(o, os.ErrDeadlineExceeded)
	}
}

var errConnectTimeout = errors.New("i/o timeout")

// shutdown closes every connection when the loop stops.
func (l *h1loop) shutdown() {
	for _, c := range l.conns {
		if c == nil {
			continue
		}
		if c.pair != nil {
			l.closePair(c.pair)
			continue
		}
		if c.isUp {
			l.closeUp(c)
		} else {
			l.closeClient(c)
		}
	}
	l.mu.Lock()
	l.stopped = true
	in := l.inbox
	l.inbox = nil
	l.mu.Unlock()
	for _, c := range in {
		l.d.stats.ActiveConns.Add(-1)
		unix.Close(c.fd)
	}
	l.file.Close()
	unix.Close(l.evfd)
}

// evConn is a client or upstream socket of a loop.
type evConn struct {
	fd       int
	gen      int32
	isUp     bool
	closed   bool     // closed or handed over: forget it
	pair     *tcpPair // a TCP stream relay's side (tcploop_linux.go); nil: HTTP
	rd, wr   bool     // an edge said readable / writable and it was not used up
	hup      bool     // the peer shut its side (EPOLLRDHUP): read on to EOF
	deadline int64

	rbuf     []byte // read buffer (nil while idle)
	rlo, rhi int

	// client side
	table      string
	remoteIP   netip.Addr
	remotePort int
	remote     []byte
	local      netip.AddrPort
	localPort  []byte
	pre        []byte      // sniffed bytes, until the loop takes the connection
	od         bool        // local is the original destination of a captured connection
	drain      *chainDrain // the filter chain's drain state (drain.go); nil: none
	untrack    func()      // ends the drain tracking (nil: none)
	closeAfter bool        // close once the current response is sent
	x          *exchange

	// upstream side
	pool   *evPool
	owner  *evConn // client served; nil while idle
	state  uint8
	reused bool
	nreq   int
}

// Upstream connection states.
const (
	usIdle = iota
	usConnecting
	usSending
	usWaiting // request sent, response being read
)

// exchange is one request/response on a client connection.
type exchange struct {
	c        *evConn
	head     reqHead
	host     []byte
	rreq     router.Request
	rt       *route
	up       *upstream
	att      balancer.Attempt
	key      []byte
	ni       int
	picked   bool
	t0       time.Time
	start    time.Time
	attempt  int
	idem     bool
	isHead   bool
	stale    bool // a stale pooled connection was retried already
	streamed bool // body bytes were relayed after the head: no retry
	chunks   bool // bodyUntilClose: a chunk was sent
	eof      bool // bodyUntilClose: the upstream closed, the last chunk is queued
	lastErr  error
	uc       *evConn
	req      []byte // head (and body bytes) for the upstream
	reqOff   int
	body     []byte // request body bytes read with the head
	bodyLeft int64  // body bytes still to come from the client
	pend     []byte // body bytes read from the client, not yet written upstream
	started  bool   // response head parsed
	resp     respHead
	left     int64
	chunk    chunkScanner
	out      []byte // pending to the client: head ...
	out2     []byte // ... then body bytes (in the upstream's buffer)
	obuf     []byte
	local    bool      // a local answer (404, 5xx), no upstream
	slow     bool      // a vars lookup needs the fasthttp engine
	over     *upstream // chosen by a plugin (traffic-split); nil: the route's
	answered bool      // a plugin called Respond (evCtx)
	scratch  []byte
}

func (x *exchange) reset() {
	obuf, req, key, host, scratch := x.obuf[:0], x.req[:0], x.key[:0], x.host[:0], x.scratch[:0]
	*x = exchange{obuf: obuf, req: req, key: key, host: host, scratch: scratch}
}

// dupTCPFD is a duplicate of the descriptor of c, if c is a
// *net.TCPConn, for a loop to own: closing c later leaves it open.
func dupTCPFD(c net.Conn) (*net.TCPConn, int, bool) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil, -1, false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, -1, false
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || fd < 0 {
		return nil, -1, false
	}
	return tc, fd, true
}

//go:build linux

package dataplane

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/meshagent/meshagent/dataplane/balancer"
	"github.com/meshagent/meshagent/dataplane/expr"
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
	tc, ok := inner.(*net.TCPConn)
	if !ok {
		return false
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return false
	}
	fd := -1
	if err := rc.Control(func(s uintptr) { fd, err = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || fd < 0 {
		return false
	}
	c := &evConn{fd: fd, table: table, wr: true}
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
	pollFn  func(uintptr) bool
	parked  int
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
	l.pollFn = l.pollReady
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

// pollReady is the netpoller callback of park (l.pollFn, made once: a
// closure per park would allocate).
func (l *h1loop) pollReady(uintptr) bool {
	l.parked = l.poll()
	return l.parked > 0
}

func (l *h1loop) clock() int64 { return int64(time.Since(l.base)) }

// run is the loop: handle ready events; when none, park in the netpoller
// until the epoll set is readable or the next deadline.
func (l *h1loop) run() {
	defer l.shutdown()
	for {
		// park polls first and parks only when nothing is ready: no
		// separate poll here, one epoll_pwait per batch under load.
		n, ok := l.park()
		if !ok {
			return
		}
		l.now = l.clock()
		for i := range n {
			if !l.event(&l.evs[i]) {
				return
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
}

// park waits in Go's netpoller for the epoll set to become readable, up
// to the next deadline; it returns the events polled, or false when the
// loop's file is closed.
func (l *h1loop) park() (int, bool) {
	if l.setDL != l.nextDL {
		l.setDL = l.nextDL
		_ = l.file.SetReadDeadline(l.base.Add(time.Duration(l.nextDL)))
	}
	l.parked = 0
	err := l.rc.Read(l.pollFn)
	n := l.parked
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			l.now = l.clock()
			l.scan()
			return 0, true
		}
		return 0, false
	}
	return n, true
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
		l.nextDL = c.deadline
	}
}

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
}

// expire handles a passed deadline.
func (l *h1loop) expire(c *evConn) {
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
	closed   bool // closed or handed over: forget it
	rd, wr   bool // an edge said readable / writable and it was not used up
	hup      bool // the peer shut its side (EPOLLRDHUP): read on to EOF
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
	pre        []byte // sniffed bytes, until the loop takes the connection
	od         bool   // local is the original destination of a captured connection
	closeAfter bool   // close once the current response is sent
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
	chunk    chunkState
	out      []byte // pending to the client: head ...
	out2     []byte // ... then body bytes (in the upstream's buffer)
	obuf     []byte
	local    bool // a local answer (404, 5xx), no upstream
	slow     bool // a vars lookup needs the fasthttp engine
	scratch  []byte
}

func (x *exchange) reset() {
	obuf, req, key, host, scratch := x.obuf[:0], x.req[:0], x.key[:0], x.host[:0], x.scratch[:0]
	*x = exchange{obuf: obuf, req: req, key: key, host: host, scratch: scratch}
}

// clientEvent continues whatever the client connection was doing.
func (l *h1loop) clientEvent(c *evConn) {
	x := c.x
	if x == nil {
		l.serveClient(c)
		return
	}
	if c.wr && (len(x.out) > 0 || len(x.out2) > 0) {
		if x.local {
			l.flushLocal(c)
		} else {
			l.relayResponse(c)
		}
		return
	}
	if c.rd && x.bodyLeft > 0 && x.uc != nil && x.uc.state == usSending && len(x.req) == x.reqOff {
		l.pumpBody(c)
	}
}

// serveClient reads and starts requests until one is in progress or the
// client has nothing more for now.
func (l *h1loop) serveClient(c *evConn) {
	for c.x == nil && !c.closed {
		if c.rhi > c.rlo {
			x := l.getExchange()
			ok, err := parseReqHead(c.rbuf[c.rlo:c.rhi], &x.head)
			if err != nil {
				l.putExchange(x)
				l.fallback(c)
				return
			}
			if ok {
				x.c = c
				c.x = x
				l.startRequest(c)
				continue
			}
			l.putExchange(x)
			if c.rlo > 0 {
				c.rhi = copy(c.rbuf, c.rbuf[c.rlo:c.rhi])
				c.rlo = 0
			}
			if c.rhi == len(c.rbuf) {
				l.fallback(c) // a head larger than the buffer: fasthttp answers it
				return
			}
		}
		if !c.rd {
			if c.rhi == c.rlo && c.rbuf != nil {
				l.putBuf(c.rbuf)
				c.rbuf, c.rlo, c.rhi = nil, 0, 0
			}
			l.setDeadline(c, l.d.servers.idleTimeout())
			return
		}
		if c.rbuf == nil {
			c.rbuf = l.getBuf()
		}
		if c.rhi == c.rlo {
			c.rlo, c.rhi = 0, 0
		}
		n, e := rawRead(c.fd, c.rbuf[c.rhi:])
		switch {
		case e == syscall.EAGAIN:
			c.rd = false
		case e != 0 || n == 0:
			l.closeClient(c)
			return
		default:
			if n < len(c.rbuf)-c.rhi && !c.hup {
				c.rd = false
			}
			c.rhi += n
		}
	}
}

// fallback hands c to the fasthttp engine with its unread bytes.
func (l *h1loop) fallback(c *evConn) {
	var pending []byte
	if c.rhi > c.rlo {
		pending = append([]byte(nil), c.rbuf[c.rlo:c.rhi]...)
	}
	l.d.stats.H1Fallbacks.Add(1)
	_ = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_DEL, c.fd, nil)
	l.unregister(c)
	f := os.NewFile(uintptr(c.fd), "")
	nc, err := net.FileConn(f)
	f.Close()
	if err != nil {
		l.d.stats.ActiveConns.Add(-1)
		return
	}
	d := l.d
	table, od, local := c.table, c.od, c.local
	go func() {
		defer d.stats.ActiveConns.Add(-1)
		if !d.track(nc) {
			nc.Close()
			return
		}
		defer d.untrack(nc)
		var conn net.Conn = nc
		if od {
			conn = newODConn(nc, local) // original_dst upstreams look for it (origdst.go)
		}
		pc := &peekConn{Conn: conn, buf: pending, lazyIdle: d.servers.idleTimeout()}
		_ = d.servers.getLazy(table).ServeConn(pc)
	}()
}

// startRequest routes the parsed request in c.x and starts it, answers it
// locally, or hands the connection to fasthttp.
func (l *h1loop) startRequest(c *evConn) {
	x := c.x
	h := &x.head
	d := l.d
	s := d.snap.Load()
	var rt *route
	if s != nil {
		if t := s.tables[c.table]; t != nil {
			x.host = hostNoPort(x.host[:0], h.host)
			x.rreq = router.Request{Path: b2s(h.path), Host: b2s(x.host), HostHeader: b2s(h.host), Method: b2s(h.method),
				RemoteAddr: c.remoteIP, Vars: (*evVars)(x)}
			if res, ok := t.Match(&x.rreq); ok {
				rt = res.Route.Value
			}
		}
	}
	if x.slow || rt != nil && !rt.chain.Empty() {
		c.x = nil
		l.putExchange(x)
		l.fallback(c)
		return
	}
	up := (*upstream)(nil)
	if rt != nil {
		up = rt.up
		if up != nil && !up.fastH1() {
			c.x = nil
			l.putExchange(x)
			l.fallback(c)
			return
		}
	}
	d.stats.Requests.Add(1)
	c.deadline = 0 // the idle timeout ends; upstream timeouts run now
	// Consume the head and the body bytes that came with it.
	c.rlo += h.len
	x.isHead = string(h.method) == "HEAD"
	if h.close {
		c.closeAfter = true
	}
	if h.contentLength > 0 {
		k := min(int64(c.rhi-c.rlo), h.contentLength)
		x.body = c.rbuf[c.rlo : c.rlo+int(k)]
		c.rlo += int(k)
		x.bodyLeft = h.contentLength - k
	}
	if rt == nil {
		d.stats.NoRoute.Add(1)
		l.respond(c, 404, "application/json", body404)
		return
	}
	x.rt = rt
	if up == nil || len(up.nodes) == 0 {
		l.respond(c, 503, "text/html", body503)
		return
	}
	x.up = up
	m := h.method
	x.idem = string(m) == "GET" || x.isHead || string(m) == "PUT" || string(m) == "DELETE" || string(m) == "OPTIONS" || string(m) == "TRACE"
	if up.keySpec != nil {
		x.key = up.keySpec.Append(x.key[:0], (*evVars)(x))
		x.att.ResetBytes(x.key, up.hf)
	} else {
		x.att.Reset("", up.hf)
	}
	if up.retryTO > 0 {
		x.start = time.Now()
	}
	l.attempt(c)
}

// fastH1 reports whether the event-loop engine can forward to u: plain
// HTTP to IP-literal nodes.
func (u *upstream) fastH1() bool {
	switch u.fast.Load() {
	case 1:
		return true
	case 2:
		return false
	}
	ok := !u.tls && !u.grpc && u.od == nil && u.dial == nil && u.scheme == "http"
	for _, n := range u.nodes {
		if _, err := netip.ParseAddrPort(n.addr); err != nil {
			ok = false
		}
	}
	if ok {
		u.fast.Store(1)
	} else {
		u.fast.Store(2)
	}
	return ok
}

// attempt picks a node and sends the request to it.
func (l *h1loop) attempt(c *evConn) {
	x := c.x
	up := x.up
	ni, ok := up.picker.Pick(&x.att)
	if !ok {
		l.failed(c)
		return
	}
	x.ni, x.picked = ni, true
	if x.attempt > 0 {
		l.d.stats.Retries.Add(1)
	}
	x.t0 = up.startTry()
	l.connect(c, true)
}

// connect gets a connection to the picked node (pooled unless !pooled)
// and starts sending.
func (l *h1loop) connect(c *evConn, pooled bool) {
	x := c.x
	up := x.up
	n := up.nodes[x.ni]
	p := l.pool(n.hc, n.addr)
	var uc *evConn
	if pooled {
		uc = p.get(l)
	}
	if uc == nil {
		var err error
		if uc, err = l.dial(p, up); err != nil {
			l.tryFailed(c, &connectError{err})
			return
		}
	}
	uc.owner = c
	x.uc = uc
	l.buildRequest(x, n)
	if uc.state == usConnecting {
		l.setDeadline(uc, up.to.connect)
		return
	}
	uc.state = usSending
	l.sendRequest(c)
}

// buildRequest writes the head for the upstream into x.req, followed by
// the body bytes that came with it.
func (l *h1loop) buildRequest(x *exchange, n *node) {
	h := &x.head
	c := x.c
	b := x.req[:0]
	b = append(b, h.method...)
	b = append(b, ' ')
	b = append(b, h.target...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	switch x.up.passHost {
	case passHostNode:
		b = append(b, n.hostHdr...)
	case passHostRewrite:
		b = append(b, x.up.host...)
	default:
		b = append(b, h.host...)
	}
	b = append(b, crlf...)
	for i := 0; i < h.n; i++ {
		if !isReqHop(h.hdrs[i].name) {
			b = append(b, h.hdrs[i].name...)
			b = append(b, ": "...)
			b = append(b, h.hdrs[i].value...)
			b = append(b, crlf...)
		}
	}
	b = append(b, "X-Forwarded-For: "...)
	if h.xffCount > 0 {
		for i := 0; i < h.n; i++ {
			if equalFoldASCII(h.hdrs[i].name, "X-Forwarded-For") && len(h.hdrs[i].value) > 0 {
				b = append(b, h.hdrs[i].value...)
				b = append(b, ", "...)
			}
		}
	}
	b = append(b, c.remote...)
	b = append(b, "\r\nX-Real-IP: "...)
	b = append(b, c.remote...)
	b = append(b, crlf...)
	if !h.hasXFProto {
		b = append(b, "X-Forwarded-Proto: http\r\n"...)
	}
	if !h.hasXFHost {
		b = append(b, "X-Forwarded-Host: "...)
		b = append(b, x.host...)
		b = append(b, crlf...)
	}
	if !h.hasXFPort {
		b = append(b, "X-Forwarded-Port: "...)
		b = append(b, c.localPort...)
		b = append(b, crlf...)
	}
	b = append(b, crlf...)
	b = append(b, x.body...)
	x.req, x.reqOff = b, 0
}

// sendRequest writes the request to the upstream until done or blocked.
func (l *h1loop) sendRequest(c *evConn) {
	x := c.x
	uc := x.uc
	for x.reqOff < len(x.req) {
		if !uc.wr {
			return
		}
		n, e := rawWritev(uc.fd, x.req[x.reqOff:], nil)
		if e == syscall.EAGAIN {
			uc.wr = false
			l.setDeadline(uc, x.up.to.send)
			return
		}
		if e != 0 {
			l.tryFailed(c, e)
			return
		}
		x.reqOff += n
	}
	if x.bodyLeft > 0 {
		l.setDeadline(uc, x.up.to.send)
		l.pumpBody(c)
		return
	}
	l.awaitResponse(c)
}

// pumpBody relays the rest of the request body from the client.
func (l *h1loop) pumpBody(c *evConn) {
	x := c.x
	uc := x.uc
	for {
		for len(x.pend) > 0 {
			if !uc.wr {
				return
			}
			n, e := rawWritev(uc.fd, x.pend, nil)
			if e == syscall.EAGAIN {
				uc.wr = false
				return
			}
			if e != 0 {
				l.abort(c, e)
				return
			}
			x.pend = x.pend[n:]
		}
		if x.bodyLeft == 0 {
			l.awaitResponse(c)
			return
		}
		if !c.rd {
			return
		}
		if c.rbuf == nil {
			c.rbuf = l.getBuf()
		}
		n, e := rawRead(c.fd, c.rbuf)
		switch {
		case e == syscall.EAGAIN:
			c.rd = false
			continue
		case e != 0 || n == 0:
			l.abort(c, nil) // the client left mid-body
			return
		}
		if n < len(c.rbuf) && !c.hup {
			c.rd = false
		}
		x.streamed = true
		k := int(min(int64(n), x.bodyLeft))
		x.bodyLeft -= int64(k)
		x.pend = c.rbuf[:k]
		c.rlo, c.rhi = k, n // a pipelined request may follow the body
	}
}

func (l *h1loop) awaitResponse(c *evConn) {
	x := c.x
	x.uc.state = usWaiting
	l.setDeadline(x.uc, x.up.to.read)
	if x.uc.rd {
		l.relayResponse(c)
	}
}

// upstreamEvent continues an upstream connection's work.
func (l *h1loop) upstreamEvent(uc *evConn) {
	o := uc.owner
	if o == nil {
		if uc.rd {
			l.closeUp(uc) // an idle connection closed (or spoke) out of turn
		}
		return
	}
	switch uc.state {
	case usConnecting:
		if !uc.wr {
			return
		}
		if soerr, err := unix.GetsockoptInt(uc.fd, unix.SOL_SOCKET, unix.SO_ERROR); err != nil || soerr != 0 {
			if err == nil {
				err = syscall.Errno(soerr)
			}
			l.tryFailed(o, &connectError{err})
			return
		}
		uc.state = usSending
		l.sendRequest(o)
	case usSending:
		if !uc.wr {
			return
		}
		if o.x.reqOff < len(o.x.req) {
			l.sendRequest(o)
		} else {
			l.pumpBody(o)
		}
	case usWaiting:
		if uc.rd {
			l.relayResponse(o)
		}
	}
}

// relayResponse reads the upstream response and writes it to the client
// until done or blocked on either side.
func (l *h1loop) relayResponse(c *evConn) {
	x := c.x
	uc := x.uc
	for {
		if len(x.out) > 0 || len(x.out2) > 0 {
			if !l.flush(c) {
				return
			}
		}
		if x.started && x.respDone() {
			l.finish(c)
			return
		}
		if !uc.rd {
			l.setDeadline(uc, x.up.to.read)
			return
		}
		if uc.rbuf == nil {
			uc.rbuf = l.getBuf()
		}
		if x.started {
			uc.rlo, uc.rhi = 0, 0
		}
		n, e := rawRead(uc.fd, uc.rbuf[uc.rhi:])
		if e == syscall.EAGAIN {
			uc.rd = false
			continue
		}
		if e != 0 || n == 0 {
			var err error = io.ErrUnexpectedEOF
			if e != 0 {
				err = e
			}
			switch {
			case !x.started:
				l.tryFailed(c, err)
			case x.resp.mode == bodyClose && e == 0:
				l.finish(c) // the end of a close-delimited body
			default:
				l.abort(c, err)
			}
			return
		}
		if n < len(uc.rbuf)-uc.rhi && !uc.hup {
			uc.rd = false // drained; the next edge says when there is more
		}
		uc.rhi += n
		if !x.started {
			if !l.startResponse(c) {
				return
			}
			continue
		}
		if !l.takeBody(c, uc.rbuf[:uc.rhi]) {
			return
		}
	}
}

// startResponse parses the response head in the upstream's buffer and
// queues it, with the body bytes after it, for the client. false: not
// complete yet, or the exchange ended.
func (l *h1loop) startResponse(c *evConn) bool {
	x := c.x
	uc := x.uc
	for {
		out, ok, err := parseRespHead(x.obuf[:0], uc.rbuf[uc.rlo:uc.rhi], &x.resp, x.isHead)
		if err != nil {
			l.tryFailed(c, err)
			return false
		}
		if !ok {
			if uc.rhi == len(uc.rbuf) {
				if uc.rlo > 0 {
					uc.rhi = copy(uc.rbuf, uc.rbuf[uc.rlo:uc.rhi])
					uc.rlo = 0
					return true
				}
				x.obuf = out
				l.tryFailed(c, errBadResponse) // a head larger than the buffer
				return false
			}
			x.obuf = out
			return true
		}
		if x.resp.status < 200 {
			if x.resp.status == 101 {
				x.obuf = out
				l.tryFailed(c, errBadResponse) // no upgrade was asked for
				return false
			}
			uc.rlo += x.resp.len // interim (1xx): dropped, as nginx does
			continue
		}
		x.started = true
		if !x.resp.hasDate {
			out = append(out, l.dateHeader()...)
		}
		if x.resp.mode == bodyClose || c.hup {
			c.closeAfter = true
		}
		if c.closeAfter {
			out = append(out, "Connection: close\r\n"...)
		}
		out = append(out, crlf...)
		x.obuf = out
		x.out = out
		x.left = x.resp.length
		rest := uc.rbuf[uc.rlo+x.resp.len : uc.rhi]
		return l.takeBody(c, rest)
	}
}

// takeBody queues the body bytes b for the client, up to the end of the
// response; false when the exchange ended.
func (l *h1loop) takeBody(c *evConn, b []byte) bool {
	x := c.x
	k := len(b)
	switch x.resp.mode {
	case bodyNone:
		k = 0
	case bodyLength:
		k = int(min(int64(k), x.left))
		x.left -= int64(k)
	case bodyChunked:
		n, _, err := x.chunk.feed(b)
		if err != nil {
			l.abort(c, err)
			return false
		}
		k = n
	}
	if k < len(b) {
		x.resp.reuse = false // bytes after the response: never reuse
	}
	x.out2 = b[:k]
	return true
}

func (x *exchange) respDone() bool {
	switch x.resp.mode {
	case bodyNone:
		return true
	case bodyLength:
		return x.left == 0
	case bodyChunked:
		return x.chunk.st == chDone
	}
	return false // bodyClose: ends with the upstream's EOF (relayResponse)
}

// flush writes pending bytes to the client; false when blocked or failed.
func (l *h1loop) flush(c *evConn) bool {
	x := c.x
	for len(x.out) > 0 || len(x.out2) > 0 {
		if !c.wr {
			return false
		}
		n, e := rawWritev(c.fd, x.out, x.out2)
		if e == syscall.EAGAIN {
			c.wr = false
			l.setDeadline(c, clientSendTimeout)
			if x.uc != nil {
				x.uc.deadline = 0 // not reading the upstream meanwhile
			}
			return false
		}
		if e != 0 {
			l.abort(c, nil)
			return false
		}
		if n >= len(x.out) {
			n -= len(x.out)
			x.out = nil
			x.out2 = x.out2[n:]
		} else {
			x.out = x.out[n:]
		}
	}
	c.deadline = 0
	return true
}

// clientSendTimeout bounds how long a client may leave a response unread.
const clientSendTimeout = 60 * time.Second

// finish ends a completed exchange: the upstream connection back to its
// pool, the balancer and passive health told, the next request started.
func (l *h1loop) finish(c *evConn) {
	x := c.x
	if uc := x.uc; uc != nil {
		x.uc = nil
		x.up.done(x.ni, x.t0, x.resp.status, nil)
		if x.resp.reuse && x.bodyLeft == 0 && !uc.hup {
			uc.pool.put(l, uc, x.up)
		} else {
			l.closeUp(uc)
		}
	}
	l.endExchange(c)
}

func (l *h1loop) endExchange(c *evConn) {
	x := c.x
	c.x = nil
	l.putExchange(x)
	if c.closeAfter {
		l.closeClient(c)
		return
	}
	l.runq = append(l.runq, c)
}

// tryFailed handles an attempt that failed before any response byte
// reached the client: retry as forwardH1 does, or answer an error.
func (l *h1loop) tryFailed(c *evConn, err error) {
	x := c.x
	up := x.up
	var ce *connectError
	isConnect := errors.As(err, &ce)
	if uc := x.uc; uc != nil {
		x.uc = nil
		reused := uc.reused
		l.closeUp(uc)
		if reused && !isConnect && !x.stale && x.idem && x.bodyLeft == 0 && !x.streamed && !isTimeout(err) {
			// A keep-alive connection the node had closed: once more on
			// a fresh one, not counted against the node (fasthttp's rule).
			x.stale = true
			l.connect(c, false)
			return
		}
	}
	x.lastErr = err
	up.done(x.ni, x.t0, 0, err)
	x.picked = false
	l.d.stats.UpstreamErrors.Add(1)
	retry := !isTimeout(err) && (isConnect || x.idem && x.bodyLeft == 0 && !x.streamed) && x.attempt < up.retries &&
		(up.retryTO <= 0 || time.Since(x.start) <= up.retryTO)
	if retry {
		x.attempt++
		x.stale = false
		l.attempt(c)
		return
	}
	l.failed(c)
}

// failed answers the client after the last attempt.
func (l *h1loop) failed(c *evConn) {
	x := c.x
	if x.lastErr == nil {
		l.respond(c, 503, "text/html", body503)
		return
	}
	l.d.log.Warn("dataplane: upstream failed", "route", x.rt.id, "upstream", x.up.id, "err", x.lastErr)
	l.respondErr(c, x.lastErr)
}

func (l *h1loop) respondErr(c *evConn, err error) {
	if isTimeout(err) {
		l.respond(c, 504, "text/html", body504)
		return
	}
	l.respond(c, 502, "text/html", body502)
}

// abort ends an exchange that cannot complete: both connections closed.
// upErr, when set, is reported against the node.
func (l *h1loop) abort(c *evConn, upErr error) {
	x := c.x
	if x != nil {
		if uc := x.uc; uc != nil {
			x.uc = nil
			l.closeUp(uc)
			if upErr != nil {
				l.d.stats.UpstreamErrors.Add(1)
				x.up.done(x.ni, x.t0, 0, upErr)
			} else {
				x.up.picker.Done(x.ni, 0)
			}
		}
	}
	l.closeClient(c)
}

// respond answers the current request locally.
func (l *h1loop) respond(c *evConn, status int, ctype string, body []byte) {
	x := c.x
	if x.bodyLeft > 0 {
		c.closeAfter = true // the rest of the body is not read
	}
	b := x.obuf[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	b = append(b, statusText(status)...)
	b = append(b, "\r\nContent-Type: "...)
	b = append(b, ctype...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, crlf...)
	b = append(b, l.dateHeader()...)
	if c.closeAfter {
		b = append(b, "Connection: close\r\n"...)
	}
	b = append(b, crlf...)
	x.obuf, x.out, x.local = b, b, true
	if !x.isHead {
		x.out2 = body
	}
	l.flushLocal(c)
}

func (l *h1loop) flushLocal(c *evConn) {
	if l.flush(c) {
		l.endExchange(c)
	}
}

func statusText(s int) string {
	switch s {
	case 404:
		return "Not Found"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	}
	return "Error"
}

// dateHeader is "Date: <now>\r\n", formatted once a second.
func (l *h1loop) dateHeader() []byte {
	sec := l.now / int64(time.Second)
	if l.date == nil || sec != l.dateSec {
		l.dateSec = sec
		l.date = append(l.date[:0], "Date: "...)
		l.date = time.Now().UTC().AppendFormat(l.date, http1TimeFormat)
		l.date = append(l.date, crlf...)
	}
	return l.date
}

const http1TimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

func (l *h1loop) closeClient(c *evConn) {
	if x := c.x; x != nil {
		c.x = nil
		if uc := x.uc; uc != nil {
			x.uc = nil
			l.closeUp(uc)
			x.up.picker.Done(x.ni, 0)
		}
		l.putExchange(x)
	}
	if c.closed {
		return
	}
	l.unregister(c)
	unix.Close(c.fd)
	l.d.stats.ActiveConns.Add(-1)
}

func (l *h1loop) closeUp(uc *evConn) {
	if uc.pool != nil {
		uc.pool.remove(uc)
	}
	uc.owner = nil
	if !uc.closed {
		l.unregister(uc)
		unix.Close(uc.fd)
	}
}

// evPool is a loop's idle connections to one node pool.
type evPool struct {
	hp   *hostPool
	sa   unix.Sockaddr
	v6   bool
	idle []*evConn
}

func (l *h1loop) pool(hp *hostPool, addr string) *evPool {
	if p := l.pools[hp]; p != nil {
		return p
	}
	ap, _ := netip.ParseAddrPort(addr) // fastH1 checked it
	p := &evPool{hp: hp}
	if a := ap.Addr(); a.Is4() || a.Is4In6() {
		p.sa = &unix.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	} else {
		p.sa, p.v6 = &unix.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}, true
	}
	l.pools[hp] = p
	return p
}

func (p *evPool) get(l *h1loop) *evConn {
	for n := len(p.idle); n > 0; n = len(p.idle) {
		uc := p.idle[n-1]
		p.idle = p.idle[:n-1]
		if uc.rd || uc.hup {
			l.closeUp(uc) // it said something while idle, or closed
			continue
		}
		uc.reused = true
		uc.deadline = 0
		uc.state = usSending
		return uc
	}
	return nil
}

func (p *evPool) put(l *h1loop, uc *evConn, up *upstream) {
	cfg := p.hp.cfg.Value()
	uc.owner, uc.state = nil, usIdle
	uc.nreq++
	if uc.rd {
		// The last read filled the buffer: make sure nothing follows.
		var b [1]byte
		if _, e := rawRead(uc.fd, b[:]); e != syscall.EAGAIN {
			l.closeUp(uc)
			return
		}
		uc.rd = false
	}
	if len(p.idle) >= max(cfg.size, 1) {
		l.closeUp(uc)
		return
	}
	if uc.rbuf != nil {
		l.putBuf(uc.rbuf)
		uc.rbuf, uc.rlo, uc.rhi = nil, 0, 0
	}
	p.idle = append(p.idle, uc)
	l.setDeadline(uc, cfg.idle)
}

func (p *evPool) remove(uc *evConn) {
	for i, v := range p.idle {
		if v == uc {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			return
		}
	}
}

// dial opens a non-blocking connection to p's node.
func (l *h1loop) dial(p *evPool, up *upstream) (*evConn, error) {
	family := unix.AF_INET
	if p.v6 {
		family = unix.AF_INET6
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPIDLE, 15)
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_KEEPINTVL, 15)
	uc := &evConn{fd: fd, isUp: true, pool: p, state: usSending, wr: true}
	err = unix.Connect(fd, p.sa)
	switch err {
	case nil:
	case unix.EINPROGRESS:
		uc.state, uc.wr = usConnecting, false
	default:
		unix.Close(fd)
		return nil, os.NewSyscallError("connect", err)
	}
	if !l.register(uc) {
		unix.Close(fd)
		return nil, errors.New("epoll_ctl failed")
	}
	_ = up
	return uc, nil
}

// h1LoopCount is the number of event loops a data plane starts.
func h1LoopCount() int { return runtime.GOMAXPROCS(0) }

// evVars is the expr.Vars view of an exchange, for vars conditions and
// chash keys. A variable it cannot give exactly as the fasthttp engine
// would (percent-encoded arguments, quoted cookies) sets x.slow, and the
// request goes to that engine.
type evVars exchange

// Var implements expr.Vars.
func (v *evVars) Var(e expr.Var) (string, bool) {
	x := (*exchange)(v)
	h := &x.head
	c := x.c
	switch e.Kind {
	case expr.KindURI:
		return b2s(h.path), true
	case expr.KindHost:
		return b2s(x.host), true
	case expr.KindRequestMethod:
		return b2s(h.method), true
	case expr.KindRemoteAddr:
		return b2s(c.remote), true
	case expr.KindScheme:
		return "http", true
	case expr.KindRequestURI:
		return b2s(h.target), true
	case expr.KindQueryString:
		return b2s(h.query), len(h.query) > 0
	case expr.KindHeader:
		b, ok := h.header(e.Name)
		return b2s(b), ok
	case expr.KindArg:
		return x.arg(e.Name)
	case expr.KindCookie:
		return x.cookie(e.Name)
	case expr.KindServerPort:
		return b2s(c.localPort), true
	case expr.KindServerAddr:
		x.scratch = c.local.Addr().AppendTo(x.scratch[:0])
		return b2s(x.scratch), true
	case expr.KindRemotePort:
		x.scratch = strconv.AppendInt(x.scratch[:0], int64(c.remotePort), 10)
		return b2s(x.scratch), true
	case expr.KindOther:
		if e.Name == "http_host" {
			return b2s(h.host), true
		}
	}
	return "", false
}

// arg finds query argument name; encoded arguments go to fasthttp.
func (x *exchange) arg(name string) (string, bool) {
	q := x.head.query
	for len(q) > 0 {
		kv := q
		if i := bytes.IndexByte(q, '&'); i >= 0 {
			kv, q = q[:i], q[i+1:]
		} else {
			q = nil
		}
		if bytes.IndexByte(kv, '%') >= 0 || bytes.IndexByte(kv, '+') >= 0 {
			x.slow = true
			return "", false
		}
		k, val, found := bytes.Cut(kv, []byte{'='})
		if string(k) == name {
			if !found {
				x.slow = true
				return "", false
			}
			return b2s(val), true
		}
	}
	return "", false
}

// cookie finds cookie name in the Cookie header.
func (x *exchange) cookie(name string) (string, bool) {
	ck := x.head.cookie
	for len(ck) > 0 {
		kv := ck
		if i := bytes.IndexByte(ck, ';'); i >= 0 {
			kv, ck = ck[:i], ck[i+1:]
		} else {
			ck = nil
		}
		kv = trimOWS(kv)
		k, val, _ := bytes.Cut(kv, []byte{'='})
		if string(trimOWS(k)) == name {
			if bytes.IndexByte(val, '"') >= 0 {
				x.slow = true
				return "", false
			}
			return b2s(trimOWS(val)), true
		}
	}
	return "", false
}

// Package sockmap relays pairs of TCP connections inside the kernel, so a
// proxied byte stream never crosses user space.
//
// A BPF sk_skb stream verdict program is attached to a SOCKHASH (socks).
// Every segment received on a socket in it is redirected to the send queue
// of the socket's peer, found by the receiving socket's cookie in a second
// SOCKHASH (peers, no program), and its length is added to the receiving
// socket's counter (counts). Both peers entries are written before either
// socket joins socks, so no segment is ever verdicted without a peer.
//
// User space only sees the end of each direction: a private epoll set
// watches for EPOLLRDHUP (FIN) and EPOLLERR, never EPOLLIN, so segments
// cost no wakeup. The kernel queues a redirected segment for a worker that
// writes it to the peer later, so at FIN the last bytes may not be on the
// peer yet; the FIN is passed on (shutdown(SHUT_WR)) only once the peer's
// send queue holds every byte counted.
//
// Backpressure. The kernel consumes a redirected segment from the
// receiving socket at once (its window reopens) and queues it for the peer
// without bound. So the program hands a direction to user space for good
// once its peer's reader is Limit bytes behind (see verdict and tail).
//
// Each redirect goes through a workqueue, which costs small request/
// response exchanges latency: callers should hand over bulk transfers only.
// Segments partly read before the splice would be sent whole again, so
// Splice first copies what is queued (drainTo). Only established sockets
// can join:
// a pair one of whose ends already got a FIN is refused (Splice fails, the
// caller relays it), and one whose second end gets its FIN during set-up
// is relayed half in user space (hybrid).
package sockmap

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/btf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/ringbuf"
	"golang.org/x/sys/unix"
)

// ErrBroken is returned by Splice when the pair could be neither relayed
// in the kernel nor handed back; both connections are closed.
var ErrBroken = errors.New("sockmap: pair half set up; connections closed")

// MaxPairs is the number of pairs relayed at once; Splice fails (the
// caller falls back to user space) beyond it.
const MaxPairs = 32768

// Relay relays pairs of TCP sockets in the kernel.
type Relay struct {
	prog   *ebpf.Program
	socks  *ebpf.Map // cookie -> the socket itself; members run the verdict
	peers  *ebpf.Map // cookie -> the socket's peer, the redirect target
	counts *ebpf.Map // cookie -> counter of the direction from the socket
	events *ebpf.Map // ring buffer: cookies of directions handed to user space
	notes  *ringbuf.Reader
	epfd   int
	wake   int // eventfd ending watch
	exited chan struct{}

	mu      sync.Mutex
	pairs   map[uint64]*pair
	nextID  uint64
	closed  bool
	quit    chan struct{}
	setup   sync.WaitGroup // Splice calls setting a pair up; Close waits
	workers sync.WaitGroup // finish, tail and hybrid goroutines; Close waits

	dirs    map[uint64]dir // by cookie of the source socket
	hybrids atomic.Int64   // pairs relayed half in user space (see hybrid)
	tails   atomic.Int64   // directions handed to user space (see tail)
}

// dir is direction side of p.
type dir struct {
	p    *pair
	side int
}

// testBeforeSocks, if set, runs between the peers and socks updates.
var testBeforeSocks func(p *pair)

// pair is two relayed sockets. Direction i runs from fd[i] to fd[1-i].
type pair struct {
	id     uint64
	fd     [2]int // duplicates owned by the pair
	cookie [2]uint64
	base   [2]uint64      // bytes queued on fd[i] before the kernel took over
	conns  []*net.TCPConn // hybrid: the originals, b relayed to a by hybrid

	fdMu  sync.RWMutex // held to use fd; written to close them
	gone  bool         // fds closed
	files []*os.File   // tail's duplicates, closed with the fds

	// guarded by Relay.mu
	live     bool    // set up; events may be handled
	tailing  [2]bool // direction i is (being) relayed in user space
	ended    [2]bool // a FIN or error was seen on fd[i]
	failed   [2]bool // an error (a reset) was seen on fd[i]
	finished int     // directions whose FIN has been passed on

	stop     chan struct{} // closed by abort: flushes give up
	stopOnce sync.Once
	done     chan struct{} // closed when the fds are closed
	downOnce sync.Once
}

// New loads the verdict program and its maps. It fails without
// CAP_BPF/CAP_NET_ADMIN, and before Linux 6.1: the ordering and FIN
// reasoning above rests on the read_skb verdict path of 6.x kernels.
func New() (*Relay, error) {
	if err := checkKernel(); err != nil {
		return nil, err
	}
	r := &Relay{epfd: -1, wake: -1, pairs: map[uint64]*pair{}, dirs: map[uint64]dir{}, quit: make(chan struct{}), exited: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			r.release()
		}
	}()
	var err error
	sockSpec := func(name string) *ebpf.MapSpec {
		return &ebpf.MapSpec{Name: name, Type: ebpf.SockHash, KeySize: 8, ValueSize: 4, MaxEntries: 2 * MaxPairs}
	}
	if r.socks, err = ebpf.NewMap(sockSpec("meshagent_socks")); err != nil {
		return nil, fmt.Errorf("sockmap: %w", err)
	}
	if r.peers, err = ebpf.NewMap(sockSpec("meshagent_peers")); err != nil {
		return nil, fmt.Errorf("sockmap: %w", err)
	}
	r.counts, err = ebpf.NewMap(&ebpf.MapSpec{Name: "meshagent_count", Type: ebpf.Hash, KeySize: 8, ValueSize: 32,
		MaxEntries: 2 * MaxPairs, Flags: unix.BPF_F_NO_PREALLOC})
	if err != nil {
		return nil, fmt.Errorf("sockmap: %w", err)
	}
	if r.events, err = ebpf.NewMap(&ebpf.MapSpec{Name: "meshagent_evts", Type: ebpf.RingBuf, MaxEntries: 256 << 10}); err != nil {
		return nil, fmt.Errorf("sockmap: %w", err)
	}
	acked, err := bytesAckedOffset()
	if err != nil {
		return nil, err
	}
	r.prog, err = ebpf.NewProgramWithOptions(&ebpf.ProgramSpec{
		Name:         "meshagent_relay",
		Type:         ebpf.SkSKB,
		AttachType:   ebpf.AttachSkSKBStreamVerdict,
		Instructions: verdict(r.peers.FD(), r.counts.FD(), r.events.FD(), acked),
		License:      "Dual BSD/GPL",
	}, ebpf.ProgramOptions{})
	if err != nil {
		return nil, fmt.Errorf("sockmap: load verdict program: %w", err)
	}
	err = link.RawAttachProgram(link.RawAttachProgramOptions{Target: r.socks.FD(), Program: r.prog, Attach: ebpf.AttachSkSKBStreamVerdict})
	if err != nil {
		return nil, fmt.Errorf("sockmap: attach verdict program: %w", err)
	}
	if r.epfd, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("sockmap: %w", err)
	}
	if r.wake, err = unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err != nil {
		return nil, fmt.Errorf("sockmap: %w", err)
	}
	if err = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, r.wake, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: -1, Pad: -1}); err != nil {
		return nil, fmt.Errorf("sockmap: %w", err)
	}
	if r.notes, err = ringbuf.NewReader(r.events); err != nil {
		return nil, fmt.Errorf("sockmap: %w", err)
	}
	ok = true
	go r.watch()
	go r.readNotes()
	return r, nil
}

// Limit bounds the bytes of one direction written to the receiving
// socket's peer and not yet acknowledged by its reader (the peer's send
// queue, what is in flight, and what the kernel holds for it). Beyond it
// the direction is relayed in user space, where a slow reader stops the
// copy and so, through TCP's window, the writer.
const Limit = 8 << 20

// counter is the counts value of a direction (a socket and its peer).
type counter struct {
	Count  uint64 // bytes redirected to the peer (program)
	User   uint64 // 1: handed to user space for good (program)
	Base   uint64 // bytes on the peer before the kernel took over
	Passed uint64 // bytes passed to the socket for user space (program)
}

// bytesAckedOffset finds tcp_sock.bytes_acked in the kernel's BTF.
func bytesAckedOffset() (int16, error) {
	spec, err := btf.LoadKernelSpec()
	if err != nil {
		return 0, fmt.Errorf("sockmap: kernel BTF: %w", err)
	}
	var st *btf.Struct
	if err := spec.TypeByName("tcp_sock", &st); err != nil {
		return 0, fmt.Errorf("sockmap: kernel BTF: %w", err)
	}
	for _, m := range st.Members {
		if m.Name == "bytes_acked" && m.BitfieldSize == 0 && m.Offset%64 == 0 {
			return int16(m.Offset.Bytes()), nil
		}
	}
	return 0, errors.New("sockmap: kernel BTF: no tcp_sock.bytes_acked")
}

// verdict is the sk_skb stream verdict program:
//
//	cookie = bpf_get_socket_cookie(skb)
//	if skb->len == 0 { return SK_DROP }  // a bare FIN; the socket saw it
//	c = counts[cookie]; if !c { return SK_DROP } // pair torn down
//	if c.user { goto pass }               // to the socket: user space reads
//	if peer = peers[cookie] { acked = tcp_sock(peer).bytes_acked; release }
//	if c.base + c.count - acked > Limit { // reader too slow
//		c.user = 1; ringbuf_output(events, cookie)
//	pass:	atomic c.passed += skb->len; return SK_PASS
//	}
//	v = bpf_sk_redirect_hash(skb, peers, &cookie, 0) // to peer's egress
//	if v == SK_PASS { atomic c.count += skb->len }
//	return v
//
// A direction is handed to user space once, between two segments, and
// verdicts of one socket do not overlap: every byte counted precedes every
// byte passed.
func verdict(peers, counts, events int, acked int16) asm.Instructions {
	return asm.Instructions{
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.FnGetSocketCookie.Call(),
		asm.StoreMem(asm.RFP, -8, asm.R0, asm.DWord),
		asm.LoadMem(asm.R7, asm.R6, 0, asm.Word), // __sk_buff.len
		asm.Mov.Imm(asm.R0, 0),                   // SK_DROP
		asm.JEq.Imm(asm.R7, 0, "out"),
		asm.LoadMapPtr(asm.R1, counts),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "out"), // r0 = 0: SK_DROP
		asm.Mov.Reg(asm.R9, asm.R0),
		asm.LoadMem(asm.R1, asm.R9, 8, asm.DWord),
		asm.JNE.Imm(asm.R1, 0, "pass"),
		// acked = bytes_acked of the peer (0 if it cannot be read)
		asm.Mov.Imm(asm.R1, 0),
		asm.StoreMem(asm.RFP, -16, asm.R1, asm.DWord),
		asm.LoadMapPtr(asm.R1, peers),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "check"),
		asm.Mov.Reg(asm.R8, asm.R0),
		asm.Mov.Reg(asm.R1, asm.R0),
		asm.FnSkcToTcpSock.Call(),
		asm.JEq.Imm(asm.R0, 0, "release"),
		asm.LoadMem(asm.R1, asm.R0, acked, asm.DWord),
		asm.StoreMem(asm.RFP, -16, asm.R1, asm.DWord),
		asm.Mov.Reg(asm.R1, asm.R8).WithSymbol("release"),
		asm.FnSkRelease.Call(),
		asm.LoadMem(asm.R1, asm.R9, 0, asm.DWord).WithSymbol("check"), // count
		asm.LoadMem(asm.R2, asm.R9, 16, asm.DWord),                    // base
		asm.Add.Reg(asm.R1, asm.R2),
		asm.LoadMem(asm.R2, asm.RFP, -16, asm.DWord),
		asm.Sub.Reg(asm.R1, asm.R2),
		asm.JSGT.Imm(asm.R1, Limit, "user"),
		asm.Mov.Reg(asm.R1, asm.R6),
		asm.LoadMapPtr(asm.R2, peers),
		asm.Mov.Reg(asm.R3, asm.RFP),
		asm.Add.Imm(asm.R3, -8),
		asm.Mov.Imm(asm.R4, 0), // egress
		asm.FnSkRedirectHash.Call(),
		asm.JNE.Imm(asm.R0, 1, "out"), // not SK_PASS: not redirected
		asm.StoreXAdd(asm.R9, asm.R7, asm.DWord),
		asm.Ja.Label("out"),
		asm.Mov.Imm(asm.R1, 1).WithSymbol("user"),
		asm.StoreMem(asm.R9, 8, asm.R1, asm.DWord),
		asm.LoadMapPtr(asm.R1, events),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -8),
		asm.Mov.Imm(asm.R3, 8),
		asm.Mov.Imm(asm.R4, 0),
		asm.FnRingbufOutput.Call(),
		asm.AddAtomic.Mem(asm.R9, asm.R7, asm.DWord, 24).WithSymbol("pass"),
		asm.Mov.Imm(asm.R0, 1), // SK_PASS
		asm.Return().WithSymbol("out"),
	}
}

// Close ends every pair (closing its connections) and unloads the program.
func (r *Relay) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	close(r.quit)
	r.mu.Unlock()
	r.setup.Wait()
	r.mu.Lock()
	ps := make([]*pair, 0, len(r.pairs))
	for _, p := range r.pairs {
		ps = append(ps, p)
	}
	r.mu.Unlock()
	for _, p := range ps {
		r.teardown(p)
	}
	r.workers.Wait()
	r.notes.Close()
	var one = [8]byte{1}
	_, _ = unix.Write(r.wake, one[:])
	<-r.exited
	r.release()
	return nil
}

func (r *Relay) release() {
	for _, fd := range []int{r.epfd, r.wake} {
		if fd >= 0 {
			unix.Close(fd)
		}
	}
	r.epfd, r.wake = -1, -1
	if r.prog != nil {
		r.prog.Close()
	}
	for _, m := range []*ebpf.Map{r.socks, r.peers, r.counts, r.events} {
		if m != nil {
			m.Close()
		}
	}
}

// Splice relays a and b in the kernel until both directions have ended,
// propagating half-closes, then closes them. On an error other than
// ErrBroken, a and b are untouched and the caller may relay them itself.
func (r *Relay) Splice(a, b *net.TCPConn) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return net.ErrClosed
	}
	r.setup.Add(1)
	r.nextID++
	p := &pair{id: r.nextID, stop: make(chan struct{}), done: make(chan struct{}), fd: [2]int{-1, -1}}
	r.pairs[p.id] = p
	r.mu.Unlock()
	err := r.start(p, a, b)
	r.setup.Done()
	if err != nil {
		return err
	}
	<-p.done
	return nil
}

// start sets p up and hands a and b over to the kernel.
func (r *Relay) start(p *pair, a, b *net.TCPConn) error {
	// The verdict gets whole segments, even one user space has read part
	// of, and would send that part again: first copy what is queued, up
	// to a read that empties the queue.
	if err := drainTo(b, a); err != nil {
		r.forget(p)
		return err
	}
	if err := drainTo(a, b); err != nil {
		r.forget(p)
		return err
	}
	if err := p.dup(a, b); err != nil {
		r.forget(p)
		return err
	}
	for i, fd := range p.fd {
		var err error
		if p.cookie[i], err = unix.GetsockoptUint64(fd, unix.SOL_SOCKET, unix.SO_COOKIE); err != nil {
			return r.undo(p, fmt.Errorf("sockmap: SO_COOKIE: %w", err))
		}
		if p.base[i], err = queued(fd); err != nil {
			return r.undo(p, err)
		}
	}

	// Peers first: a socket's segments are verdicted from the moment it
	// joins socks, and must find their target.
	for i := range 2 {
		if err := r.counts.Update(p.cookie[i], counter{Base: p.base[1-i]}, ebpf.UpdateAny); err != nil {
			return r.undo(p, fmt.Errorf("sockmap: counts: %w", err))
		}
		if err := r.peers.Update(p.cookie[i], uint32(p.fd[1-i]), ebpf.UpdateAny); err != nil {
			return r.undo(p, fmt.Errorf("sockmap: peers: %w", err))
		}
	}
	if err := r.socks.Update(p.cookie[0], uint32(p.fd[0]), ebpf.UpdateAny); err != nil {
		return r.undo(p, fmt.Errorf("sockmap: socks: %w", err))
	}
	// Only established sockets may join: b fails if it got a FIN since
	// the peers update. Segments from a may already be queued for b (and
	// leaving socks could drop one being verdicted), so a stays; the rest
	// of b (its receive queue, then the FIN) is copied by hybrid.
	if testBeforeSocks != nil {
		testBeforeSocks(p)
	}
	hybrid := r.socks.Update(p.cookie[1], uint32(p.fd[1]), ebpf.UpdateAny) != nil
	// Bytes that arrived before the sockets joined socks wait in their
	// receive queues until the next segment wakes the verdict; setting
	// SO_RCVLOWAT runs it now (tcp_set_rcvlowat calls sk_data_ready).
	for _, fd := range p.fd {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVLOWAT, 1)
	}
	watch := 2
	if hybrid {
		watch = 1
		p.conns = []*net.TCPConn{a, b}
	} else {
		// Closing the originals takes the sockets out of the Go poller:
		// its edge-triggered EPOLLIN would wake it for every segment.
		a.Close()
		b.Close()
	}
	// Under r.mu, so no event tears p down before both are watched; live
	// publishes the fields set above to event.
	r.mu.Lock()
	var err error
	for i, fd := range p.fd[:watch] {
		ev := unix.EpollEvent{Events: unix.EPOLLRDHUP | unix.EPOLLET, Fd: int32(uint32(p.id<<1 | uint64(i))), Pad: int32(uint32(p.id >> 31))}
		if err = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
			break
		}
	}
	p.live = err == nil
	p.ended[1] = hybrid
	if p.live {
		for i := range 2 {
			r.dirs[p.cookie[i]] = dir{p, i}
		}
	}
	r.mu.Unlock()
	if err != nil {
		r.teardown(p)
		return fmt.Errorf("%w: epoll: %v", ErrBroken, err)
	}
	// A hand-over noted before p was live found no dirs entry.
	for i := range 2 {
		var c counter
		if r.counts.Lookup(p.cookie[i], &c) == nil && c.User != 0 {
			r.startTail(p, i)
		}
	}
	if hybrid {
		r.hybrids.Add(1)
		r.spawn(func() { r.hybrid(p, a, b) })
	}
	return nil
}

// hybrid relays b to a in user space, for a pair whose b could not join
// socks. Nothing else writes to a: b's segments are not verdicted.
func (r *Relay) hybrid(p *pair, a, b *net.TCPConn) {
	if _, err := io.Copy(a, b); err != nil {
		r.teardown(p)
		return
	}
	_ = a.CloseWrite()
	r.ended(p)
}

// drainTo copies to dst what src has received, until a read comes back
// short: the receive queue was then empty, no segment partly read.
func drainTo(dst, src *net.TCPConn) error {
	rc, err := src.SyscallConn()
	if err != nil {
		return err
	}
	var buf []byte
	for {
		if buf == nil {
			buf = make([]byte, 64<<10)
		}
		var n int
		var rerr error
		if err := rc.Read(func(fd uintptr) bool {
			n, rerr = unix.Read(int(fd), buf)
			return true // never wait
		}); err != nil {
			return err
		}
		if rerr == unix.EAGAIN || n == 0 && rerr == nil {
			return nil // empty, or EOF (left for the verdict path to see)
		}
		if rerr != nil {
			return rerr
		}
		if _, err := dst.Write(buf[:n]); err != nil {
			return err
		}
		if n < len(buf) {
			return nil
		}
	}
}

// dup takes duplicates of a's and b's descriptors, so the sockets outlive
// the Go connections.
func (p *pair) dup(a, b *net.TCPConn) error {
	for i, c := range []*net.TCPConn{a, b} {
		rc, err := c.SyscallConn()
		if err != nil {
			p.closeFDs()
			return err
		}
		var derr error
		err = rc.Control(func(fd uintptr) {
			p.fd[i], derr = unix.FcntlInt(fd, unix.F_DUPFD_CLOEXEC, 0)
		})
		if err == nil {
			err = derr
		}
		if err != nil {
			p.fd[i] = -1
			p.closeFDs()
			return fmt.Errorf("sockmap: dup: %w", err)
		}
	}
	return nil
}

func (p *pair) closeFDs() {
	for i, fd := range p.fd {
		if fd >= 0 {
			unix.Close(fd)
			p.fd[i] = -1
		}
	}
}

// undo removes a pair none of whose sockets joined socks; the caller
// still owns the original connections.
func (r *Relay) undo(p *pair, err error) error {
	r.forget(p)
	p.closeFDs()
	return err
}

// forget removes p from the relay and the maps.
func (r *Relay) forget(p *pair) {
	r.mu.Lock()
	delete(r.pairs, p.id)
	for i := range 2 {
		if d, ok := r.dirs[p.cookie[i]]; ok && d.p == p {
			delete(r.dirs, p.cookie[i])
		}
	}
	r.mu.Unlock()
	for i := range 2 {
		_ = r.socks.Delete(p.cookie[i])
		_ = r.peers.Delete(p.cookie[i])
		_ = r.counts.Delete(p.cookie[i])
	}
}

// teardown aborts flushes, removes p and closes its sockets (once).
func (r *Relay) teardown(p *pair) {
	p.stopOnce.Do(func() { close(p.stop) })
	p.downOnce.Do(func() {
		r.forget(p)
		p.fdMu.Lock()
		for _, fd := range p.fd {
			_ = unix.EpollCtl(r.epfd, unix.EPOLL_CTL_DEL, fd, nil)
			unix.Close(fd)
		}
		for _, f := range p.files {
			f.Close()
		}
		p.gone = true
		p.fdMu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
		close(p.done)
	})
}

// with runs fn unless p's sockets are closed (their numbers may then
// belong to other files); false if they are.
func (p *pair) with(fn func()) bool {
	p.fdMu.RLock()
	defer p.fdMu.RUnlock()
	if p.gone {
		return false
	}
	fn()
	return true
}

// watch dispatches FINs and errors until Close.
func (r *Relay) watch() {
	defer close(r.exited)
	evs := make([]unix.EpollEvent, 128)
	for {
		n, err := unix.EpollWait(r.epfd, evs, -1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return
		}
		for _, ev := range evs[:n] {
			if ev.Fd == -1 && ev.Pad == -1 {
				return // Close
			}
			v := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
			r.event(v>>1, int(v&1), ev.Events)
		}
	}
}

// event handles the end of side: a FIN, or an error. A reset may follow
// the FIN (the watch is edge-triggered, so it is a second event) and must
// still end the pair: the direction into the reset socket is dead.
func (r *Relay) event(id uint64, side int, events uint32) {
	failed := events&unix.EPOLLERR != 0
	r.mu.Lock()
	p := r.pairs[id]
	if p == nil || !p.live || p.failed[side] || p.ended[side] && !failed {
		r.mu.Unlock()
		return
	}
	p.ended[side] = true
	p.failed[side] = failed
	r.mu.Unlock()
	r.spawn(func() { r.finish(p, side, failed) })
}

// finish passes on the end of direction src once its bytes are all on the
// peer: a FIN as shutdown(SHUT_WR); an error (a reset) by closing both, as
// the user-space relay does when a write fails (after the bytes read
// before the reset, as read(2) returns them first). A direction handed to
// user space is ended by its copy (tail) instead; its read fails on a
// reset, which closes both.
func (r *Relay) finish(p *pair, src int, failed bool) {
	dst := 1 - src
	// The FIN is seen (tcp_fin) before the segments received with or just
	// before it are verdicted, in the same softirq that holds the socket
	// lock; TCP_INFO takes that lock, so once it returns they are counted.
	var err error
	if !p.with(func() { _, err = unix.GetsockoptTCPInfo(p.fd[src], unix.IPPROTO_TCP, unix.TCP_INFO) }) || err != nil {
		r.teardown(p)
		return
	}
	var c counter
	if err := r.counts.Lookup(p.cookie[src], &c); err != nil {
		r.teardown(p)
		return
	}
	if c.User != 0 {
		r.startTail(p, src)
		return
	}
	if !r.flush(p, dst, c.Base+c.Count) || failed {
		r.teardown(p)
		return
	}
	p.with(func() { _ = unix.Shutdown(p.fd[dst], unix.SHUT_WR) })
	r.ended(p)
}

// ended counts a direction whose FIN was passed on; the second ends p.
func (r *Relay) ended(p *pair) {
	r.mu.Lock()
	p.finished++
	last := p.finished == 2
	r.mu.Unlock()
	if last {
		r.teardown(p)
	}
}

// flush waits until p.fd[dst] has had want bytes written (everything
// redirected to it is in its send queue); false if the pair was aborted or
// the socket failed.
func (r *Relay) flush(p *pair, dst int, want uint64) bool {
	wait := 20 * time.Microsecond
	for {
		var q uint64
		var err error
		var closed bool
		// Not SO_ERROR: reading it clears the error, and the watch
		// would then miss the reset. Until its FIN is passed on, dst
		// can only be closed by an error.
		if !p.with(func() { q, closed, err = queuedState(p.fd[dst]) }) || err != nil {
			return false
		}
		if q >= want {
			return true
		}
		if closed {
			return false
		}
		t := time.NewTimer(wait)
		select {
		case <-p.stop:
			t.Stop()
			return false
		case <-r.quit:
			t.Stop()
			return false
		case <-t.C:
		}
		wait = min(2*wait, 10*time.Millisecond)
	}
}

// readNotes starts the user-space copy of each direction the program
// hands over (its reader fell Limit bytes behind).
func (r *Relay) readNotes() {
	for {
		rec, err := r.notes.Read()
		if err != nil {
			return // Close
		}
		if len(rec.RawSample) < 8 {
			continue
		}
		r.mu.Lock()
		d, ok := r.dirs[binary.NativeEndian.Uint64(rec.RawSample)]
		r.mu.Unlock()
		if ok {
			r.startTail(d.p, d.side)
		}
	}
}

// spawn runs fn in a goroutine Close waits for, unless r is closed.
func (r *Relay) spawn(fn func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return
	}
	r.workers.Add(1)
	go func() {
		defer r.workers.Done()
		fn()
	}()
}

// startTail starts tail for direction src of p, once.
func (r *Relay) startTail(p *pair, src int) {
	r.mu.Lock()
	start := p.live && !p.tailing[src]
	p.tailing[src] = true
	r.mu.Unlock()
	if start {
		r.tails.Add(1)
		r.spawn(func() { r.tail(p, src) })
	}
}

// tail relays direction src in user space from where the kernel left it:
// once every redirected byte is on the peer, it copies what the program
// passed to the socket (read(2) returns it) on to the FIN.
func (r *Relay) tail(p *pair, src int) {
	dst := 1 - src
	var c counter
	if err := r.counts.Lookup(p.cookie[src], &c); err != nil || !r.flush(p, dst, c.Base+c.Count) {
		r.teardown(p)
		return
	}
	p.fdMu.Lock()
	if p.gone {
		p.fdMu.Unlock()
		return
	}
	in, err1 := dupFile(p.fd[src])
	out, err2 := dupFile(p.fd[dst])
	for _, f := range []*os.File{in, out} {
		if f != nil {
			p.files = append(p.files, f)
		}
	}
	p.fdMu.Unlock()
	if err1 != nil || err2 != nil {
		r.teardown(p)
		return
	}
	buf := make([]byte, 64<<10)
	var got uint64
	for {
		n, err := in.Read(buf)
		if n > 0 {
			got += uint64(n)
			if _, werr := out.Write(buf[:n]); werr != nil {
				r.teardown(p)
				return
			}
		}
		if err == io.EOF {
			// After the FIN read(2) returns 0 as soon as the socket's
			// message queue is empty, even if passed segments still
			// wait (receive memory full) for the psock worker to queue
			// them: end only once every byte passed was read.
			done, ok := r.allRead(p, src, got)
			if !ok {
				r.teardown(p)
				return
			}
			if done {
				break
			}
			continue
		}
		if err != nil {
			r.teardown(p)
			return
		}
	}
	p.with(func() { _ = unix.Shutdown(p.fd[dst], unix.SHUT_WR) })
	r.ended(p)
}

// allRead reports whether got is every byte passed from p.fd[src] to
// user space (it waits a little when not); false if the pair is ending.
func (r *Relay) allRead(p *pair, src int, got uint64) (done, ok bool) {
	var err error
	if !p.with(func() { _, err = unix.GetsockoptTCPInfo(p.fd[src], unix.IPPROTO_TCP, unix.TCP_INFO) }) || err != nil {
		return false, false
	}
	var c counter
	if err := r.counts.Lookup(p.cookie[src], &c); err != nil {
		return false, false
	}
	if got >= c.Passed {
		return true, true
	}
	t := time.NewTimer(time.Millisecond)
	defer t.Stop()
	select {
	case <-p.stop:
		return false, false
	case <-r.quit:
		return false, false
	case <-t.C:
	}
	return false, true
}

// dupFile returns a pollable *os.File on a duplicate of fd.
func dupFile(fd int) (*os.File, error) {
	nfd, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	return os.NewFile(uintptr(nfd), "sockmap"), nil
}

// queued is the number of bytes ever written to fd's send queue: acked
// plus still queued (SIOCOUTQ). The two are read apart, so they are taken
// again until no ACK came in between.
func queued(fd int) (uint64, error) {
	q, _, err := queuedState(fd)
	return q, err
}

// tcpClose is TCP_CLOSE, the state a reset (or a finished close) leaves.
const tcpClose = 7

// queuedState is queued, and whether fd is in state CLOSE.
func queuedState(fd int) (uint64, bool, error) {
	for {
		i1, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return 0, false, fmt.Errorf("sockmap: TCP_INFO: %w", err)
		}
		out, err := unix.IoctlGetInt(fd, unix.SIOCOUTQ)
		if err != nil {
			return 0, false, fmt.Errorf("sockmap: SIOCOUTQ: %w", err)
		}
		i2, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
		if err != nil {
			return 0, false, fmt.Errorf("sockmap: TCP_INFO: %w", err)
		}
		if i1.Bytes_acked == i2.Bytes_acked {
			return i1.Bytes_acked + uint64(out), i2.State == tcpClose, nil
		}
	}
}

// checkKernel refuses kernels older than 6.1.
func checkKernel() error {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return fmt.Errorf("sockmap: uname: %w", err)
	}
	rel := unix.ByteSliceToString(u.Release[:])
	var major, minor int
	if _, err := fmt.Sscanf(rel, "%d.%d", &major, &minor); err != nil {
		return fmt.Errorf("sockmap: kernel release %q: %w", rel, err)
	}
	if major < 6 || major == 6 && minor < 1 {
		return fmt.Errorf("sockmap: kernel %s, need 6.1 or later", rel)
	}
	return nil
}

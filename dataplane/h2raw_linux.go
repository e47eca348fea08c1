//go:build linux

package dataplane

import (
	"io"
	"net"
	"os"
	"syscall"
	"time"
	"unsafe"
)

// h2RawIO does the socket reads and writes of an HTTP/2 connection with
// raw read and write system calls inside RawConn.Read and RawConn.Write,
// as the HTTP/1.1 event loop: net.Conn's go through entersyscall and
// exitsyscall, and the scheduler's monitor, seeing the P in system
// calls, keeps waking up at its fastest rate. Waiting for readiness is
// the netpoller's still, with the connection's deadlines.
type h2RawIO struct {
	rc syscall.RawConn
	pc *peekConn // the sniffer's, if any: its bytes first, its idle timeout

	// Argument and results of the call in readFn (a method value made
	// once: a closure per call would be allocated).
	p      []byte
	n      int
	errno  syscall.Errno
	readFn func(fd uintptr) bool
}

// newH2RawIO returns the raw I/O of c, or nil when c is not a TCP
// connection (TLS: through c).
func newH2RawIO(c net.Conn) *h2RawIO {
	pc, _ := c.(*peekConn)
	if pc != nil {
		c = pc.Conn
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return nil
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil
	}
	r := &h2RawIO{rc: rc, pc: pc}
	r.readFn = r.read
	return r
}

func (r *h2RawIO) read(fd uintptr) bool {
	for {
		n, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(r.p))), uintptr(len(r.p)))
		switch e {
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false // wait in the netpoller, and again
		}
		r.n, r.errno = int(n), e
		return true
	}
}

// Read implements io.Reader; one goroutine reads.
func (r *h2RawIO) Read(p []byte) (int, error) {
	if pc := r.pc; pc != nil {
		if len(pc.buf) > 0 {
			return pc.Read(p)
		}
		if pc.lazyIdle > 0 { // as peekConn.Read
			if now := time.Now(); pc.deadline.Sub(now) < pc.lazyIdle {
				pc.deadline = now.Add(pc.lazyIdle * 3 / 2)
				if err := pc.Conn.SetReadDeadline(pc.deadline); err != nil {
					return 0, err
				}
			}
		}
	}
	if len(p) == 0 {
		return 0, nil
	}
	r.p, r.n, r.errno = p, 0, 0
	err := r.rc.Read(r.readFn)
	n, errno := r.n, r.errno
	r.p = nil
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, h2RawErr("read", errno)
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// h2RawWriter is the write side of an h2RawIO: writes are serialized by
// the connection's write lock, apart from reads.
type h2RawWriter struct {
	p       []byte
	n       int
	errno   syscall.Errno
	rc      syscall.RawConn
	writeFn func(fd uintptr) bool
}

// writer returns the write side of r.
func (r *h2RawIO) writer() *h2RawWriter {
	w := &h2RawWriter{rc: r.rc}
	w.writeFn = w.write
	return w
}

func (w *h2RawWriter) write(fd uintptr) bool {
	for len(w.p) > 0 {
		n, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(unsafe.SliceData(w.p))), uintptr(len(w.p)))
		switch e {
		case 0:
			w.n += int(n)
			w.p = w.p[n:]
			continue
		case syscall.EINTR:
			continue
		case syscall.EAGAIN:
			return false
		}
		w.errno = e
		return true
	}
	return true
}

// Write implements io.Writer.
func (w *h2RawWriter) Write(p []byte) (int, error) {
	w.p, w.n, w.errno = p, 0, 0
	err := w.rc.Write(w.writeFn)
	n, errno := w.n, w.errno
	w.p = nil
	if err == nil && errno != 0 {
		err = h2RawErr("write", errno)
	}
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return n, err
}

// h2RawErr is the error of a failed system call, as net.Conn's.
func h2RawErr(op string, e syscall.Errno) error {
	return &net.OpError{Op: op, Net: "tcp", Err: os.NewSyscallError(op, e)}
}

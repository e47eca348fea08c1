package target

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/meshagent/meshagent/perf/load"
)

// process is a child process with its output kept for error messages.
type process struct {
	cmd  *exec.Cmd
	out  tailBuffer
	done chan struct{}
	err  error // Wait's result, valid after done
}

// startProcess runs bin with args and env additions in dir.
func startProcess(bin string, args, env []string, dir string) (*process, error) {
	p := &process{done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Dir = dir
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = &p.out
	p.cmd.Stderr = &p.out
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start %s: %v", ErrUnavailable, bin, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

// waitReady probes until probe succeeds, the process exits, or timeout.
func (p *process) waitReady(ctx context.Context, timeout time.Duration, probe func() error) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		select {
		case <-p.done:
			return fmt.Errorf("%w: %s exited (%v): %s", ErrUnavailable, p.cmd.Path, p.err, p.out.String())
		default:
		}
		if last = probe(); last == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: %s not ready after %v: %v; output: %s", ErrUnavailable, p.cmd.Path, timeout, last, p.out.String())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, then SIGKILL after 3 s.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(3 * time.Second):
	}
	if err := p.cmd.Process.Kill(); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("target: kill %d: %w", p.pid(), err)
	}
	<-p.done
	return nil
}

// probeProtocol returns a probe doing one request of protocol p on addr.
func probeProtocol(p load.Protocol, addr string) func() error {
	return func() error {
		f, err := load.NewFactory(p, load.ClientConfig{Addr: addr, Timeout: time.Second})
		if err != nil {
			return err
		}
		c := f.NewClient()
		defer c.Close()
		return c.Do(context.Background())
	}
}

// tailBuffer keeps the last 2 KiB written to it.
type tailBuffer struct {
	mu  sync.Mutex
	buf []byte
}

const tailMax = 2048

func (t *tailBuffer) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, b...)
	if len(t.buf) > tailMax {
		t.buf = append(t.buf[:0], t.buf[len(t.buf)-tailMax:]...)
	}
	return len(b), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.buf)
}

package load

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/meshagent/meshagent/perf/backend"
	"github.com/meshagent/meshagent/perf/stats"
)

type tcpFactory struct {
	cfg  ClientConfig
	bulk bool
}

func (f tcpFactory) NewClient() Client {
	c := &tcpClient{cfg: f.cfg, bulk: f.bulk}
	if f.bulk {
		c.out = bytes.Repeat([]byte("b"), min(f.cfg.Payload, 256<<10))
	} else {
		c.out = bytes.Repeat([]byte("e"), f.cfg.Payload)
		c.in = make([]byte, f.cfg.Payload)
	}
	return c
}

// tcpClient speaks the backend's TCP modes. Any error closes the
// connection; the next Do reconnects.
type tcpClient struct {
	cfg  ClientConfig
	bulk bool
	conn net.Conn
	out  []byte
	in   []byte
}

func (c *tcpClient) Do(context.Context) error {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.cfg.Addr, c.cfg.Timeout)
		if err != nil {
			return &stats.KindError{Kind: stats.ErrConnect, Err: err}
		}
		mode := backend.ModeEcho
		if c.bulk {
			mode = backend.ModeBulk
		}
		if _, err := conn.Write([]byte{mode}); err != nil {
			_ = conn.Close()
			return &stats.KindError{Kind: stats.ErrConnect, Err: err}
		}
		c.conn = conn
	}
	_ = c.conn.SetDeadline(time.Now().Add(c.cfg.Timeout))
	var err error
	if c.bulk {
		err = c.transfer()
	} else {
		err = c.echo()
	}
	if err != nil {
		_ = c.conn.Close()
		c.conn = nil
		if _, ok := err.(*stats.KindError); !ok {
			err = &stats.KindError{Kind: stats.Classify(err), Err: err}
		}
	}
	return err
}

func (c *tcpClient) echo() error {
	if _, err := c.conn.Write(c.out); err != nil {
		return err
	}
	if _, err := io.ReadFull(c.conn, c.in); err != nil {
		return err
	}
	if !bytes.Equal(c.in, c.out) {
		return &stats.KindError{Kind: stats.ErrStatus, Err: fmt.Errorf("echo mismatch")}
	}
	return nil
}

func (c *tcpClient) transfer() error {
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(c.cfg.Payload))
	if _, err := c.conn.Write(hdr[:]); err != nil {
		return err
	}
	for left := c.cfg.Payload; left > 0; {
		n := min(left, len(c.out))
		if _, err := c.conn.Write(c.out[:n]); err != nil {
			return err
		}
		left -= n
	}
	var ack [8]byte
	if _, err := io.ReadFull(c.conn, ack[:]); err != nil {
		return err
	}
	if ack != hdr {
		return &stats.KindError{Kind: stats.ErrStatus, Err: fmt.Errorf("bulk ack %x, want %x", ack, hdr)}
	}
	return nil
}

func (c *tcpClient) Close() error {
	if c.conn != nil {
		return c.conn.Close()
	}
	return nil
}

package dataplane

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestHTTP1IdleTimeout checks the lazily refreshed idle deadline of
// plaintext HTTP/1.1 connections: a connection used more often than the
// idle timeout stays open across several timeouts, an idle one is closed
// between the timeout and 1.5 times it.
func TestHTTP1IdleTimeout(t *testing.T) {
	const idle = 300 * time.Millisecond
	e := newEnv(t, nil)
	e.dp.servers.idle = idle
	b := backend(t, "b")
	e.put("/apisix/routes/r", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(b)+`}}`)
	request := func(c net.Conn, br *bufio.Reader) error {
		if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			return err
		}
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, r.Body)
		r.Body.Close()
		if r.StatusCode != 200 {
			t.Errorf("status %d", r.StatusCode)
		}
		return nil
	}
	cases := []struct {
		name  string
		every time.Duration // pause between requests
		n     int
		open  bool // still usable after the pauses
	}{
		{"busy connection outlives the timeout", idle / 3, 8, true},
		{"idle connection is closed", idle * 2, 2, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := net.Dial("tcp", e.http)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			br := bufio.NewReader(c)
			if err := request(c, br); err != nil {
				t.Fatal(err)
			}
			var last error
			for i := 1; i < tc.n && last == nil; i++ {
				time.Sleep(tc.every)
				last = request(c, br)
			}
			if tc.open && last != nil {
				t.Fatalf("busy connection failed: %v", last)
			}
			if !tc.open && last == nil {
				t.Fatal("idle connection still served after twice the idle timeout")
			}
		})
	}
	t.Run("not closed before the timeout", func(t *testing.T) {
		c, err := net.Dial("tcp", e.http)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		if err := request(c, br); err != nil {
			t.Fatal(err)
		}
		time.Sleep(idle * 4 / 5)
		if err := request(c, br); err != nil {
			t.Fatalf("closed after %v idle (timeout %v): %v", idle*4/5, idle, err)
		}
	})
}

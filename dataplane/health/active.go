package health

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/meshagent/meshagent/etcdcompat/apisix"
)

// activeConf is checks.active with APISIX's defaults applied.
type activeConf struct {
	typ         string
	timeout     time.Duration
	concurrency int
	host        string
	port        int
	path        string
	method      string
	body        string
	verify      bool
	headers     []string
	healthyIv   time.Duration
	unhealthyIv time.Duration
	th          thresholds
}

func newActiveConf(a *apisix.ActiveCheck, unit time.Duration) (*activeConf, error) {
	c := &activeConf{
		typ: "http", timeout: unit, concurrency: 10, path: "/", method: "GET", verify: true,
		healthyIv: unit, unhealthyIv: unit,
		th: thresholds{
			successes: 2, httpFailures: 5, tcpFailures: 2, timeouts: 3,
			okStatuses:  []int{200, 302},
			badStatuses: []int{429, 404, 500, 501, 502, 503, 504, 505},
		},
	}
	switch a.Type {
	case "", "http", "https", "tcp":
		if a.Type != "" {
			c.typ = a.Type
		}
	default:
		return nil, fmt.Errorf("%w: checks.active.type: must be http, https or tcp, got %q", ErrInvalid, a.Type)
	}
	if a.Timeout < 0 {
		return nil, fmt.Errorf("%w: checks.active.timeout: must be > 0", ErrInvalid)
	}
	if a.Timeout > 0 {
		c.timeout = time.Duration(a.Timeout * float64(unit))
	}
	if a.Concurrency < 0 {
		return nil, fmt.Errorf("%w: checks.active.concurrency: must be >= 1", ErrInvalid)
	}
	if a.Concurrency > 0 {
		c.concurrency = a.Concurrency
	}
	if a.Port < 0 || a.Port > 65535 {
		return nil, fmt.Errorf("%w: checks.active.port: must be 1..65535, got %d", ErrInvalid, a.Port)
	}
	c.host, c.port, c.body = a.Host, a.Port, a.HTTPReqBody
	if a.HTTPPath != "" {
		c.path = a.HTTPPath
	}
	if a.HTTPMethod != "" {
		c.method = a.HTTPMethod
	}
	if a.HTTPSVerifyCertificate != nil {
		c.verify = *a.HTTPSVerifyCertificate
	}
	for i, h := range a.ReqHeaders {
		if !strings.Contains(h, ":") || strings.ContainsAny(h, "\r\n") {
			return nil, fmt.Errorf("%w: checks.active.req_headers[%d]: must be \"Name: value\" on one line", ErrInvalid, i)
		}
		c.headers = append(c.headers, h)
	}
	if h := a.Healthy; h != nil {
		if h.Interval < 0 {
			return nil, fmt.Errorf("%w: checks.active.healthy.interval: must be >= 1", ErrInvalid)
		}
		if h.Interval > 0 {
			c.healthyIv = time.Duration(h.Interval) * unit
		}
		if len(h.HTTPStatuses) > 0 {
			c.th.okStatuses = h.HTTPStatuses
		}
		if h.Successes != 0 {
			c.th.successes = h.Successes
		}
	}
	if u := a.Unhealthy; u != nil {
		if u.Interval < 0 {
			return nil, fmt.Errorf("%w: checks.active.unhealthy.interval: must be >= 1", ErrInvalid)
		}
		if u.Interval > 0 {
			c.unhealthyIv = time.Duration(u.Interval) * unit
		}
		if len(u.HTTPStatuses) > 0 {
			c.th.badStatuses = u.HTTPStatuses
		}
		if u.HTTPFailures != 0 {
			c.th.httpFailures = u.HTTPFailures
		}
		if u.TCPFailures != 0 {
			c.th.tcpFailures = u.TCPFailures
		}
		if u.Timeouts != 0 {
			c.th.timeouts = u.Timeouts
		}
	}
	if err := c.th.validate("checks.active"); err != nil {
		return nil, err
	}
	return c, nil
}

// Start begins active probing in background goroutines (no-op without
// active checks or when already started). The first probe of every node
// runs at once.
func (c *Checker) Start() {
	if c.active == nil || !c.started.CompareAndSwap(false, true) {
		return
	}
	go c.loop()
}

// Stop ends active probing and waits for the probe loop to exit. In-flight
// probes are abandoned (their results are discarded). Safe to call more
// than once and without Start.
func (c *Checker) Stop() {
	c.stopOnce.Do(func() { close(c.stop) })
	if c.started.Load() {
		<-c.done
	}
}

func (c *Checker) loop() {
	defer close(c.done)
	tick := min(c.active.healthyIv, c.active.unhealthyIv)
	t := time.NewTicker(tick)
	defer t.Stop()
	sem := make(chan struct{}, c.active.concurrency)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for {
		now := time.Now()
		for i, n := range c.nodes {
			if now.Before(n.next) || n.probing.Load() {
				continue
			}
			iv := c.active.healthyIv
			if n.unhealthy.Load() {
				iv = c.active.unhealthyIv
			}
			n.next = now.Add(iv)
			select {
			case sem <- struct{}{}:
			case <-c.stop:
				return
			}
			n.probing.Store(true)
			go func(i int, n *nodeState) {
				defer func() { <-sem; n.probing.Store(false) }()
				status, o := c.probe(ctx, i)
				select {
				case <-c.stop:
					return
				default:
				}
				c.record(i, &c.active.th, status, o, "active")
			}(i, n)
		}
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
	}
}

// probe runs one active check against node i.
func (c *Checker) probe(ctx context.Context, i int) (int, Outcome) {
	a := c.active
	addr := c.targets[i].Addr
	if a.port != 0 {
		h, _, _ := net.SplitHostPort(addr)
		addr = net.JoinHostPort(h, strconv.Itoa(a.port))
	}
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	d := net.Dialer{}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return 0, classify(err)
	}
	defer conn.Close()
	if a.typ == "tcp" {
		return 0, OutcomeSuccess
	}
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	host := a.host
	if host == "" {
		host = c.targets[i].Host
	}
	if host == "" {
		host, _, _ = net.SplitHostPort(c.targets[i].Addr)
	}
	if a.typ == "https" {
		tc := tls.Client(conn, &tls.Config{ServerName: host, InsecureSkipVerify: !a.verify}) //nolint:gosec // https_verify_certificate=false asks for it
		if err := tc.HandshakeContext(ctx); err != nil {
			return 0, classify(err)
		}
		conn = tc
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.0\r\nHost: %s\r\n", a.method, a.path, host)
	for _, h := range a.headers {
		b.WriteString(h)
		b.WriteString("\r\n")
	}
	if a.body != "" {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", len(a.body))
	}
	b.WriteString("Connection: close\r\n\r\n")
	b.WriteString(a.body)
	if _, err := conn.Write([]byte(b.String())); err != nil {
		return 0, classify(err)
	}
	line, err := bufio.NewReaderSize(conn, 512).ReadString('\n')
	if err != nil {
		return 0, classify(err)
	}
	st, ok := parseStatusLine(line)
	if !ok {
		return 0, OutcomeTCPError
	}
	return st, OutcomeResponse
}

// parseStatusLine reads the status code of an HTTP/1.x status line such as
// "HTTP/1.1 200 OK\r\n". A line that is not one is a protocol failure.
func parseStatusLine(line string) (int, bool) {
	rest, ok := strings.CutPrefix(line, "HTTP/")
	if !ok {
		return 0, false
	}
	_, rest, ok = strings.Cut(rest, " ")
	if !ok || len(rest) < 3 {
		return 0, false
	}
	code := rest[:3]
	if len(rest) > 3 && rest[3] != ' ' && rest[3] != '\r' && rest[3] != '\n' {
		return 0, false
	}
	st, err := strconv.Atoi(code)
	if err != nil || st < 100 || st > 999 {
		return 0, false
	}
	return st, true
}

func classify(err error) Outcome {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return OutcomeTimeout
	}
	return OutcomeTCPError
}

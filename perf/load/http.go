package load

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/meshagent/meshagent/perf/stats"
	"github.com/valyala/fasthttp"
	"golang.org/x/net/http2"
)

type http1Factory struct{ cfg ClientConfig }

func (f http1Factory) NewClient() Client {
	c := &http1Client{
		hc: &fasthttp.HostClient{
			Addr: f.cfg.Addr, MaxConns: 1, ReadTimeout: f.cfg.Timeout, WriteTimeout: f.cfg.Timeout,
			MaxIdleConnDuration: time.Minute, NoDefaultUserAgentHeader: true,
			Dial: func(addr string) (net.Conn, error) {
				return fasthttp.DialTimeout(addr, f.cfg.Timeout)
			},
		},
		timeout: f.cfg.Timeout,
	}
	c.req.SetRequestURI("http://" + f.cfg.Addr + f.cfg.Path)
	c.req.Header.SetMethod(fasthttp.MethodGet)
	return c
}

type http1Client struct {
	hc      *fasthttp.HostClient
	req     fasthttp.Request
	resp    fasthttp.Response
	timeout time.Duration
}

func (c *http1Client) Do(context.Context) error {
	err := c.hc.DoTimeout(&c.req, &c.resp, c.timeout)
	if err != nil {
		return classifyFast(err)
	}
	if sc := c.resp.StatusCode(); sc != fasthttp.StatusOK {
		return &stats.KindError{Kind: stats.ErrStatus, Err: fmt.Errorf("http status %d", sc)}
	}
	return nil
}

func (c *http1Client) Close() error {
	c.hc.CloseIdleConnections()
	return nil
}

func classifyFast(err error) error {
	var k stats.ErrorKind
	switch {
	case errors.Is(err, fasthttp.ErrDialTimeout):
		k = stats.ErrConnect
	case errors.Is(err, fasthttp.ErrTimeout):
		k = stats.ErrTimeout
	case errors.Is(err, fasthttp.ErrConnectionClosed):
		k = stats.ErrReset
	default:
		k = stats.Classify(err)
	}
	return &stats.KindError{Kind: k, Err: err}
}

type h2Factory struct{ cfg ClientConfig }

func (f h2Factory) NewClient() Client {
	tr := &http2.Transport{
		AllowHTTP: true,
		DialTLSContext: func(ctx context.Context, network, addr string, _ *tls.Config) (net.Conn, error) {
			d := net.Dialer{Timeout: f.cfg.Timeout}
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, &stats.KindError{Kind: stats.ErrConnect, Err: err}
			}
			return c, nil
		},
	}
	return &h2Client{tr: tr, url: "http://" + f.cfg.Addr + f.cfg.Path, timeout: f.cfg.Timeout}
}

type h2Client struct {
	tr      *http2.Transport
	url     string
	timeout time.Duration
}

func (c *h2Client) Do(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url, nil)
	if err != nil {
		return err
	}
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		return &stats.KindError{Kind: stats.Classify(err), Err: err}
	}
	_, err = io.Copy(io.Discard, resp.Body)
	cerr := resp.Body.Close()
	if err = errors.Join(err, cerr); err != nil {
		return &stats.KindError{Kind: stats.Classify(err), Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		return &stats.KindError{Kind: stats.ErrStatus, Err: fmt.Errorf("http status %d", resp.StatusCode)}
	}
	return nil
}

func (c *h2Client) Close() error {
	c.tr.CloseIdleConnections()
	return nil
}

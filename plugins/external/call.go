package external

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshagent/meshagent/plugins/external/pluginv1"
)

// ErrInvalidConfig is wrapped when the plugin rejects a configuration.
var ErrInvalidConfig = fmt.Errorf("external: plugin rejected its configuration")

// Conf is one plugin configuration registered with a Process. Its token is
// renewed transparently after the child restarts (tokens do not survive a
// restart). Safe for concurrent use.
type Conf struct {
	p     *Process
	name  string
	raw   []byte
	mu    sync.Mutex
	gen   atomic.Uint64
	token atomic.Uint64
}

// Configure validates raw (a JSON object) with the child and returns the
// registered configuration. A rejection wraps ErrInvalidConfig and carries
// the plugin's message. When the child is not serving, the Conf is still
// returned, with an error wrapping ErrUnavailable: it is configured on first
// use.
func (p *Process) Configure(ctx context.Context, raw []byte) (*Conf, error) {
	c := &Conf{p: p, name: p.cfg.Name, raw: append([]byte(nil), raw...)}
	_, _, err := c.client(ctx)
	return c, err
}

// client returns the current child's client and this Conf's token for it,
// configuring the child first when it restarted since.
func (c *Conf) client(ctx context.Context) (pluginv1.PluginClient, uint64, error) {
	cur := c.p.cur.Load()
	if cur == nil {
		return nil, 0, fmt.Errorf("plugin %s: %w", c.name, ErrUnavailable)
	}
	if c.gen.Load() == cur.gen {
		return cur.client, c.token.Load(), nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gen.Load() == cur.gen {
		return cur.client, c.token.Load(), nil
	}
	r, err := cur.client.Configure(ctx, &pluginv1.ConfigureRequest{Name: c.name, Config: c.raw})
	if err != nil {
		if status.Code(err) == codes.InvalidArgument {
			return nil, 0, fmt.Errorf("plugin %s: %w: %s", c.name, ErrInvalidConfig, status.Convert(err).Message())
		}
		return nil, 0, fmt.Errorf("plugin %s: configure: %w", c.name, err)
	}
	c.token.Store(r.Token)
	c.gen.Store(cur.gen)
	return cur.client, r.Token, nil
}

// RequestHeaders calls the plugin's RequestHeaders phase.
func (c *Conf) RequestHeaders(ctx context.Context, req *pluginv1.HTTPRequest) (*pluginv1.Mutation, error) {
	cl, tok, err := c.client(ctx)
	if err != nil {
		return nil, err
	}
	req.Token = tok
	return cl.RequestHeaders(ctx, req)
}

// RequestBody calls the plugin's RequestBody phase.
func (c *Conf) RequestBody(ctx context.Context, req *pluginv1.HTTPRequest) (*pluginv1.Mutation, error) {
	cl, tok, err := c.client(ctx)
	if err != nil {
		return nil, err
	}
	req.Token = tok
	return cl.RequestBody(ctx, req)
}

// ResponseHeaders calls the plugin's ResponseHeaders phase.
func (c *Conf) ResponseHeaders(ctx context.Context, resp *pluginv1.HTTPResponse) (*pluginv1.Mutation, error) {
	cl, tok, err := c.client(ctx)
	if err != nil {
		return nil, err
	}
	resp.Token = tok
	return cl.ResponseHeaders(ctx, resp)
}

// ResponseBody calls the plugin's ResponseBody phase.
func (c *Conf) ResponseBody(ctx context.Context, resp *pluginv1.HTTPResponse) (*pluginv1.Mutation, error) {
	cl, tok, err := c.client(ctx)
	if err != nil {
		return nil, err
	}
	resp.Token = tok
	return cl.ResponseBody(ctx, resp)
}

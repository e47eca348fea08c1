package load

import (
	"bytes"
	"context"
	"fmt"
	"strings"

	"github.com/meshagent/meshagent/perf/backend"
	"github.com/meshagent/meshagent/perf/stats"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

type grpcFactory struct {
	cfg    ClientConfig
	stream bool
}

func (f grpcFactory) NewClient() Client {
	return &grpcClient{cfg: f.cfg, stream: f.stream, req: backend.Message{Data: bytes.Repeat([]byte("g"), f.cfg.Payload)}}
}

// grpcClient owns one ClientConn, so one TCP connection per client.
type grpcClient struct {
	cfg    ClientConfig
	stream bool
	cc     *grpc.ClientConn
	st     grpc.ClientStream
	cancel context.CancelFunc
	req    backend.Message
	resp   backend.Message
}

var streamDesc = &grpc.StreamDesc{StreamName: "Stream", ServerStreams: true, ClientStreams: true}

func (c *grpcClient) Do(ctx context.Context) error {
	if c.cc == nil {
		cc, err := grpc.NewClient("passthrough:///"+c.cfg.Addr,
			grpc.WithTransportCredentials(insecure.NewCredentials()),
			grpc.WithDefaultCallOptions(grpc.ForceCodec(backend.Codec{})))
		if err != nil {
			return &stats.KindError{Kind: stats.ErrConnect, Err: err}
		}
		c.cc = cc
	}
	if !c.stream {
		ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		defer cancel()
		if err := c.cc.Invoke(ctx, backend.EchoUnaryMethod, &c.req, &c.resp); err != nil {
			return grpcErr(err)
		}
		return c.check()
	}
	if c.st == nil {
		sctx, cancel := context.WithCancel(ctx)
		st, err := c.cc.NewStream(sctx, streamDesc, backend.EchoStreamMethod)
		if err != nil {
			cancel()
			return grpcErr(err)
		}
		c.st, c.cancel = st, cancel
	}
	if err := c.st.SendMsg(&c.req); err != nil {
		c.dropStream()
		return grpcErr(err)
	}
	if err := c.st.RecvMsg(&c.resp); err != nil {
		c.dropStream()
		return grpcErr(err)
	}
	return c.check()
}

func (c *grpcClient) check() error {
	if !bytes.Equal(c.resp.Data, c.req.Data) {
		return &stats.KindError{Kind: stats.ErrStatus, Err: fmt.Errorf("echo mismatch: %d bytes back, sent %d", len(c.resp.Data), len(c.req.Data))}
	}
	return nil
}

func (c *grpcClient) dropStream() {
	if c.cancel != nil {
		c.cancel()
	}
	c.st, c.cancel = nil, nil
}

func (c *grpcClient) Close() error {
	c.dropStream()
	if c.cc != nil {
		return c.cc.Close()
	}
	return nil
}

// grpcErr classifies a gRPC error: Unavailable while connecting is a
// connect error, other Unavailable a reset, DeadlineExceeded a timeout,
// any other code a status error.
func grpcErr(err error) error {
	k := stats.ErrStatus
	switch st, _ := status.FromError(err); st.Code() {
	case codes.DeadlineExceeded:
		k = stats.ErrTimeout
	case codes.Unavailable:
		k = stats.ErrReset
		if m := st.Message(); strings.Contains(m, "connect") || strings.Contains(m, "dial") {
			k = stats.ErrConnect
		}
	case codes.Canceled:
		k = stats.ErrReset
	}
	return &stats.KindError{Kind: k, Err: err}
}

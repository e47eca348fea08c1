package backend

import (
	"context"

	"google.golang.org/grpc"
)

// Full method names of the echo service.
const (
	EchoUnaryMethod  = "/perf.Echo/Unary"
	EchoStreamMethod = "/perf.Echo/Stream"
)

// echoServer is the handler type the service descriptor names.
type echoServer interface {
	unary(ctx context.Context, in *Message) (*Message, error)
	stream(st grpc.ServerStream) error
}

// EchoServiceDesc describes perf.Echo: Unary echoes one Message, Stream
// echoes each Message received on a bidirectional stream.
var EchoServiceDesc = grpc.ServiceDesc{
	ServiceName: "perf.Echo",
	HandlerType: (*echoServer)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(Message)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(echoServer).unary(ctx, in)
		},
	}},
	Streams: []grpc.StreamDesc{{
		StreamName:    "Stream",
		ServerStreams: true,
		ClientStreams: true,
		Handler: func(srv any, st grpc.ServerStream) error {
			return srv.(echoServer).stream(st)
		},
	}},
}

type echoImpl struct{ s *Server }

func (e echoImpl) unary(_ context.Context, in *Message) (*Message, error) {
	e.s.requests.Add(1)
	e.s.stall.wait()
	return in, nil
}

func (e echoImpl) stream(st grpc.ServerStream) error {
	for {
		m := new(Message)
		if err := st.RecvMsg(m); err != nil {
			return nil // io.EOF or the client went away: the stream is done
		}
		e.s.requests.Add(1)
		e.s.stall.wait()
		if err := st.SendMsg(m); err != nil {
			return err
		}
	}
}

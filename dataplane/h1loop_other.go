//go:build !linux

package dataplane

import "net"

// The HTTP/1.1 event loops are Linux-only (epoll); elsewhere fasthttp
// serves every request and goroutines relay TCP stream routes.

type h1loops struct{}

func newH1Loops(*Dataplane, int) (*h1loops, error) { return nil, nil }
func h1LoopCount() int                             { return 0 }
func (*h1loops) adopt(*peekConn, string) bool      { return false }
func (*h1loops) close()                            {}
func (*h1loops) adoptTCP(net.Conn, *upstream) bool { return false }

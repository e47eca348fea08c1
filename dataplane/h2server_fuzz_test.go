package dataplane

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// FuzzH2Server: the HTTP/2 front end (h2server.go) reads untrusted bytes
// from clients. Whatever follows the preface, serving the connection must
// neither panic nor hang once the client has closed it.
func FuzzH2Server(f *testing.F) {
	e := newEnv(f, nil)
	a := "127.0.0.1:1" // nothing listens: routed requests get a 502
	e.put("/apisix/routes/r", `{"uri":"/*","upstream":{"nodes":`+nodesJSON(a)+`}}`)

	var seed bytes.Buffer
	fr := http2.NewFramer(&seed, nil)
	_ = fr.WriteSettings()
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, kv := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":authority", "x"}, {":path", "/a"}, {"content-length", "3"}} {
		_ = enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	_ = fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb.Bytes(), EndHeaders: true})
	_ = fr.WriteData(1, true, []byte("abc"))
	_ = fr.WriteWindowUpdate(0, 1<<20)
	_ = fr.WriteRSTStream(1, http2.ErrCodeCancel)
	_ = fr.WritePing(false, [8]byte{1})
	_ = fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	f.Add(seed.Bytes())
	f.Add([]byte{0, 0, 4, 8, 0, 0, 0, 0, 0, 0x7f, 0xff, 0xff, 0xff}) // window overflow
	f.Add([]byte{0, 0, 0, 1, 4, 0, 0, 0, 2})                         // headers on an even stream

	f.Fuzz(func(t *testing.T, b []byte) {
		client, server := net.Pipe()
		done := make(chan struct{})
		go func() {
			defer close(done)
			e.dp.serveH2Conn(server, "", false)
			server.Close()
		}()
		go io.Copy(io.Discard, client) // the server's frames
		_ = client.SetWriteDeadline(time.Now().Add(2 * time.Second))
		_, _ = client.Write(h2Preface)
		_, _ = client.Write(b)
		client.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("server still serving 10 s after the client closed; input %x", b)
		}
	})
}

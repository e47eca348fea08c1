package dataplane

import (
	"bufio"
	"bytes"
	"io"
	"net/http/httputil"
	"testing"
)

// readChunked decodes data as a chunked upstream body, reading step
// bytes at a time (step 0: io.ReadAll).
func readChunked(data []byte, step int) ([]byte, error) {
	out, _, err := decodeChunked(data, step)
	return out, err
}

// decodeChunked is readChunked that also returns how many bytes of data
// the body took from the connection.
func decodeChunked(data []byte, step int) (out []byte, used int, err error) {
	r := bytes.NewReader(data)
	b := &upstreamBody{br: bufio.NewReaderSize(r, 64), mode: bodyChunked}
	defer func() { used = len(data) - r.Len() - b.br.Buffered() }()
	if step <= 0 {
		out, err = io.ReadAll(b)
		return out, 0, err
	}
	buf := make([]byte, step)
	for {
		n, err := b.Read(buf)
		out = append(out, buf[:n]...)
		if err == io.EOF {
			return out, 0, nil
		}
		if err != nil {
			return out, 0, err
		}
	}
}

// FuzzUpstreamBodyChunked checks the chunked decoder against
// net/http/httputil's on arbitrary input: no panic, no more output than
// input, and the same bytes whenever both accept it.
func FuzzUpstreamBodyChunked(f *testing.F) {
	for _, s := range []string{
		"0\r\n\r\n",
		"5\r\nhello\r\n0\r\n\r\n",
		"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\n",
		"A\r\n0123456789\r\n0\r\n\r\n",
		"5\r\nhel",
		"5\r\nhelloXX0\r\n\r\n",
		"fffffffffffffffff\r\n",
		"\r\n",
		"5 \r\nhello\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s), uint8(0))
		f.Add([]byte(s), uint8(1))
	}
	f.Fuzz(func(t *testing.T, data []byte, step uint8) {
		got, err := readChunked(data, int(step%8))
		if len(got) > len(data) {
			t.Fatalf("decoded %d bytes from %d", len(got), len(data))
		}
		if err != nil {
			return
		}
		want, werr := io.ReadAll(httputil.NewChunkedReader(bytes.NewReader(data)))
		if werr == nil && !bytes.Equal(got, want) {
			t.Fatalf("decoded %q, httputil %q", got, want)
		}
	})
}

// FuzzUpstreamBodyChunkedRoundTrip decodes what httputil's chunked
// writer encodes, in pieces of any size.
func FuzzUpstreamBodyChunkedRoundTrip(f *testing.F) {
	f.Add([]byte("hello, world"), uint16(3), uint8(0))
	f.Add(bytes.Repeat([]byte{0, '\r', '\n', '0'}, 100), uint16(64), uint8(5))
	f.Fuzz(func(t *testing.T, payload []byte, piece uint16, step uint8) {
		var enc bytes.Buffer
		w := httputil.NewChunkedWriter(&enc)
		p := max(1, int(piece))
		for off := 0; off < len(payload); off += p {
			w.Write(payload[off:min(len(payload), off+p)])
		}
		w.Close()
		enc.WriteString("\r\n")
		got, err := readChunked(enc.Bytes(), int(step%8))
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("decoded %q, %v; want %q", got, err, payload)
		}
	})
}

package dataplane

import "github.com/valyala/fasthttp"

// isHopHeader reports whether k names a hop-by-hop header (RFC 9110
// 7.6.1), compared ASCII case-insensitively.
func isHopHeader(k []byte) bool {
	switch len(k) {
	case 2:
		return equalFoldASCII(k, "Te")
	case 7:
		return equalFoldASCII(k, "Trailer") || equalFoldASCII(k, "Upgrade")
	case 10:
		return equalFoldASCII(k, "Connection") || equalFoldASCII(k, "Keep-Alive")
	case 16:
		return equalFoldASCII(k, "Proxy-Connection")
	case 18:
		return equalFoldASCII(k, "Proxy-Authenticate")
	case 19:
		return equalFoldASCII(k, "Proxy-Authorization")
	}
	return false
}

// delHopRequest removes the hop-by-hop headers of a request. The headers
// are scanned once; the (key-normalizing) deletes only run when one is
// present, which a keep-alive HTTP/1.1 request usually has none of.
func delHopRequest(h *fasthttp.RequestHeader) {
	found := false
	for k := range h.All() {
		if isHopHeader(k) {
			found = true
			break
		}
	}
	if !found {
		return
	}
	for _, k := range hopHeaders {
		h.Del(k)
	}
}

// delHopResponse removes the hop-by-hop headers of an upstream response.
// The node pools keep header names as the upstream sent them, so each one
// found is deleted by its exact spelling (scratch holds a copy of it).
func delHopResponse(h *fasthttp.ResponseHeader, scratch []byte) []byte {
	h.ResetConnectionClose()
	for range len(hopHeaders) + 4 { // bounded: a header repeated many times stays (upstream bug)
		scratch = scratch[:0]
		for k := range h.All() {
			if isHopHeader(k) {
				scratch = append(scratch, k...)
				break
			}
		}
		if len(scratch) == 0 {
			break
		}
		h.DelBytes(scratch)
	}
	return scratch
}

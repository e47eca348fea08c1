package auth

import (
	"bytes"
	"net/url"
)

// removeArg returns query without the arguments named name.
func removeArg(query []byte, name string) []byte {
	var out []byte
	for len(query) > 0 {
		var part []byte
		part, query, _ = bytes.Cut(query, []byte("&"))
		k, _, _ := bytes.Cut(part, []byte("="))
		if uk, err := url.QueryUnescape(string(k)); err == nil && uk == name {
			continue
		}
		if len(out) > 0 {
			out = append(out, '&')
		}
		out = append(out, part...)
	}
	return out
}

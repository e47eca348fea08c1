// Command goheader is an example meshagent out-of-process plugin in Go:
// it sets a request header and denies one path. Configuration:
//
//	{"header": "x-go-plugin", "value": "hello", "deny_path": "/forbidden"}
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/meshagent/meshagent/plugins/external/pluginv1"
	"github.com/meshagent/meshagent/plugins/external/sdk"
)

type config struct {
	Header   string `json:"header"`
	Value    string `json:"value"`
	DenyPath string `json:"deny_path"`
}

func main() {
	sdk.Serve(sdk.Plugin{
		Configure: func(_ string, raw []byte) (any, error) {
			var c config
			d := json.NewDecoder(bytes.NewReader(raw))
			d.DisallowUnknownFields()
			if err := d.Decode(&c); err != nil {
				return nil, fmt.Errorf("config: %w", err)
			}
			if c.Header == "" {
				return nil, errors.New("config: header: required")
			}
			return &c, nil
		},
		RequestHeaders: func(conf any, r *pluginv1.HTTPRequest) (*pluginv1.Mutation, error) {
			c := conf.(*config)
			if c.DenyPath != "" && r.Path == c.DenyPath {
				return &pluginv1.Mutation{Status: 403, Body: []byte("denied by go plugin")}, nil
			}
			return &pluginv1.Mutation{SetHeaders: []*pluginv1.Header{{Key: c.Header, Value: c.Value}}}, nil
		},
	})
}

// Package header is the example out-of-process plugin's logic: it sets a
// request header and answers 403 for one path. Configuration:
//
//	{"header": "x-go-plugin", "value": "hello", "deny_path": "/forbidden"}
package header

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/meshagent/meshagent/plugins/external/pluginv1"
	"github.com/meshagent/meshagent/plugins/external/sdk"
)

// Config is the plugin's configuration.
type Config struct {
	Header   string `json:"header"`
	Value    string `json:"value"`
	DenyPath string `json:"deny_path"`
}

// Plugin returns the plugin implementation.
func Plugin() sdk.Plugin {
	return sdk.Plugin{
		Configure: func(_ string, raw []byte) (any, error) {
			var c Config
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
			c := conf.(*Config)
			if c.DenyPath != "" && r.Path == c.DenyPath {
				return &pluginv1.Mutation{Status: 403, Body: []byte("denied by go plugin")}, nil
			}
			return &pluginv1.Mutation{SetHeaders: []*pluginv1.Header{{Key: c.Header, Value: c.Value}}}, nil
		},
	}
}

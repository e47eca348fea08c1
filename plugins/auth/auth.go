// Package auth holds APISIX's authentication plugins that identify a
// consumer: key-auth, basic-auth and jwt-auth. Each has a route schema (how
// to find the credential) and a consumer schema (the credential a consumer
// holds); both are decoded strictly once per snapshot. A request that
// authenticates gets its consumer attached (plugins.ConsumerCtx); one that
// does not gets APISIX's 401 and body.
//
// It owns the credential lookup and the plugins' schemas; it does not own
// consumers themselves (the data plane builds them from the store).
package auth

import (
	"errors"
	"fmt"

	"github.com/meshagent/meshagent/plugins"
)

// ErrNoConsumers is returned at build time when the data plane offers no
// consumers (the Builder lacks plugins.ConsumerSource).
var ErrNoConsumers = errors.New("auth: this data plane does not provide consumers")

// consumers returns the snapshot's consumers carrying a config for plugin,
// decoding each credential with decode. A consumer whose credential is
// invalid fails the build naming the consumer and field.
func consumers[T any](b plugins.Builder, plugin string, decode func(raw []byte) (T, error)) ([]entry[T], error) {
	src, ok := b.(plugins.ConsumerSource)
	if !ok {
		return nil, ErrNoConsumers
	}
	var out []entry[T]
	for _, c := range src.Consumers() {
		raw, ok := c.Plugins[plugin]
		if !ok {
			continue
		}
		cred, err := decode(raw)
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %s: %w", c.Username, plugin, err)
		}
		out = append(out, entry[T]{c, cred})
	}
	return out, nil
}

type entry[T any] struct {
	consumer *plugins.Consumer
	cred     T
}

// attach records the authenticated consumer on the request.
func attach(c plugins.Ctx, cons *plugins.Consumer) {
	if cc, ok := c.(plugins.ConsumerCtx); ok {
		cc.SetConsumer(cons)
	}
}

package plugins

// WithConsumer returns the chain to run once an authentication filter has
// identified cons: APISIX merges the consumer's plugins (and its group's)
// into the route's, a consumer's plugin replacing the route's plugin of the
// same name. Without consumer plugins it returns c itself. The merged chain
// is built once per (chain, consumer) and cached; both are immutable
// snapshot objects, so the cache dies with the snapshot.
//
// The data plane calls it between the rewrite and access phases; filters
// of the merged chain that belong to phases already run are not run again.
func (c *Chain) WithConsumer(cons *Consumer) *Chain {
	if c == nil || cons == nil || len(cons.Entries) == 0 {
		return c
	}
	if v, ok := c.byConsumer.Load(cons); ok {
		return v.(*Chain)
	}
	override := make(map[string]bool, len(cons.Entries))
	for _, e := range cons.Entries {
		override[e.Name] = true
	}
	route := make([]Entry, 0, len(c.route)+len(cons.Entries))
	for _, e := range c.route {
		if !override[e.Name] {
			route = append(route, e)
		}
	}
	route = append(route, cons.Entries...)
	m := NewChain(c.global, route)
	v, _ := c.byConsumer.LoadOrStore(cons, m)
	return v.(*Chain)
}

// Chain returns a chain of the consumer's own entries, built once. The data
// plane runs its rewrite phase right after authentication (APISIX's
// rewrite_in_consumer), since the route's rewrite phase has already run.
func (cons *Consumer) Chain() *Chain {
	cons.ownOnce.Do(func() { cons.own = NewChain(nil, cons.Entries) })
	return cons.own
}

// Command goheader is an example meshagent out-of-process plugin in Go:
// it sets a request header and denies one path (see package header).
package main

import (
	"github.com/meshagent/meshagent/plugins/examples/goheader/header"
	"github.com/meshagent/meshagent/plugins/external/sdk"
)

func main() { sdk.Serve(header.Plugin()) }

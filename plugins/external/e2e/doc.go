// Package e2e holds the end-to-end tests of out-of-process plugins: real
// plugin processes (Go and Node.js) registered before the data plane
// starts, driven through real HTTP under load. It has no non-test code.
package e2e

# meshagent: one static binary. `make run` starts the demo mesh; `make test`
# installs missing system packages (as root) and runs every test.

GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)
PKGS      := ./...
# System packages the tests drive for real (iptables in network namespaces,
# nginx/haproxy as reference proxies, node for the JavaScript plugin).
# System tools the tests drive for real: see .ci/deps.sh.

.PHONY: all build build-plugins run test test-deps bench lint fuzz-short clean

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/meshagent ./cmd/meshagent
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/perf ./cmd/perf

# The cgo flavour that can load Go .so plugins.
build-plugins:
	CGO_ENABLED=1 $(GO) build -tags soplugins -ldflags '-X main.version=$(VERSION)' -o $(BIN)/meshagent-cgo ./cmd/meshagent

run: build
	$(BIN)/meshagent demo

test-deps:
	@sh .ci/deps.sh
	@if command -v npm >/dev/null && [ ! -d plugins/examples/jsheader/node_modules/@grpc/grpc-js ]; then \
		echo "npm ci (example JavaScript plugin)"; (cd plugins/examples/jsheader && npm ci --no-audit --no-fund --loglevel=error) || true; fi

test: test-deps
	$(GO) vet $(PKGS)
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) test -race -timeout 20m $(PKGS)

bench:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

lint:
	$(GO) vet $(PKGS)
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

fuzz-short:
	@for t in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
		for f in $$(grep -h '^func Fuzz' $$t/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
			echo "fuzz $$t $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 10s $$t || exit 1; \
		done; \
	done

clean:
	rm -rf $(BIN)

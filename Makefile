# Interlock's two README commands are `sudo make run` and `sudo make test`.
# Both work on a fresh Debian/Ubuntu machine with Go: missing packages are
# installed with apt, generated files are rebuilt only when asked.

GO        ?= go
BIN       := bin/interlock
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
ARCH_INC  := /usr/include/$(shell uname -m)-linux-gnu

# Debian packages the tests and benchmarks use; installed when missing.
TEST_DEBS := sqlite3 iproute2 util-linux procps
GEN_DEBS  := clang llvm libbpf-dev linux-libc-dev

.PHONY: all build run test unit e2e bench generate check-generate deps deps-gen vet fmt clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/interlock

# The daemon on the embedded defaults (or /etc/interlock/interlock.yaml if
# it exists): journal in /var/lib/interlock, control socket in /run/interlock.
run: build
	./$(BIN) daemon

# deps installs what the tests need and is a no-op when it is all there.
deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

deps-gen:
	@missing=""; for p in $(GEN_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

test: deps vet check-generate unit e2e

unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /test/)

e2e: build
	$(GO) test -count=1 -timeout 15m ./test/...

bench: build deps
	$(GO) run ./test/bench/tcpbench -interlock ./$(BIN)

# generate rebuilds the BPF objects and Go bindings from bpf/*.c.
generate: deps-gen
	cd bpf && $(GO) generate ./...

# check-generate fails when the committed BPF objects do not match bpf/*.c.
check-generate: generate
	@git diff --exit-code --stat -- bpf/ || { echo "bpf/ is stale: run 'make generate' and commit the result"; exit 1; }

clean:
	rm -rf bin

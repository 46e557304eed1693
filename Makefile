# Interlock's two README commands are `sudo make run` and `sudo make test`.
# Both work on a fresh Debian/Ubuntu machine with Go: missing packages are
# installed with apt, generated files are rebuilt only when asked.

# Go: the one on PATH, else where installers put it (sudo's secure_path
# leaves out /usr/local/go/bin, and a user's ~/go or ~/sdk). Its directory
# goes first on PATH, for the tests that run `go build` themselves.
SUDO_HOME := $(if $(SUDO_USER),$(shell getent passwd $(SUDO_USER) | cut -d: -f6))
GO        ?= $(firstword $(shell command -v go 2>/dev/null) $(wildcard /usr/local/go/bin/go /usr/lib/go/bin/go $(SUDO_HOME)/go/bin/go $(SUDO_HOME)/sdk/go*/bin/go /snap/bin/go) go)
ifneq ($(GO),go)
export PATH := $(abspath $(dir $(GO))):$(PATH)
endif
BIN       := bin/interlock
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
ARCH_INC  := /usr/include/$(shell uname -m)-linux-gnu

# Debian packages the tests and benchmarks use; installed when missing.
# rpm, debootstrap, zsh and fish: the package tests (test/pkg) install the
# .deb and the .rpm into a Debian root and syntax-check the completions;
# systemd provides systemd-analyze for the unit check; runc and
# busybox-static run the container tests' OCI bundles, docker.io a
# private dockerd with a cgroup parent (no image pull); etcd-server: the
# Kubernetes tests' API server stores in it; curl is their client without
# a kubeconfig user (kubectl would prompt).
TEST_DEBS := curl sqlite3 iproute2 runc busybox-static docker.io util-linux procps rpm debootstrap zsh fish groff-base man-db systemd postgresql-15 postgresql-client-15 openssh-server openssh-client tmux rsync chromium sudo etcd-server
GEN_DEBS  := clang llvm libbpf-dev linux-libc-dev

# versitygw: the S3-compatible server with object lock the hub's publish
# tests run against (test/e2e/s3test). Installed once per version into a
# cache directory that outlives the checkout; the tests find it through
# INTERLOCK_VERSITYGW.
VERSITYGW_VERSION := v1.8.0
TEST_CACHE        ?= $(or $(SUDO_HOME),$(HOME))/.cache/interlock
VERSITYGW         := $(TEST_CACHE)/versitygw-$(VERSITYGW_VERSION)/versitygw
export INTERLOCK_VERSITYGW := $(VERSITYGW)

# kube-apiserver: the Kubernetes target's tests run a real API server
# (internal/testkit/kubetest), built once per version from the
# k8s.io/kubernetes module into the same cache (hack/build-kube-apiserver.sh
# says why go install cannot). The tests' client is the kubectl the
# machine has (v1.32).
KUBE_VERSION   := v1.37.2
KUBE_APISERVER := $(TEST_CACHE)/kube-apiserver-$(KUBE_VERSION)/kube-apiserver
export INTERLOCK_KUBE_APISERVER := $(KUBE_APISERVER)

.PHONY: console-assets all go-check build verifier run test unit unit-nocgo e2e bench bench-journal bench-pg bench-ssh bench-policy bench-hub bench-kube generate check-generate deps deps-gen vet fmt clean package

all: build

build: go-check
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/interlock

# verifier: the standalone bundle verifier an auditor builds, pure Go.
verifier: go-check
	CGO_ENABLED=0 $(GO) build -o bin/interlock-verify ./cmd/interlock-verify

# The daemon on the embedded defaults (or /etc/interlock/interlock.yaml if
# it exists): journal in /var/lib/interlock, control socket in /run/interlock.
run: build
	./$(BIN) daemon

# go-check says what to do when no Go toolchain is found.
go-check:
	@command -v $(GO) >/dev/null 2>&1 || { echo "Go not found (not on PATH, nor in /usr/local/go/bin, /usr/lib/go/bin, ~/go/bin). Install Go (https://go.dev/doc/install) or run: sudo make $(MAKECMDGOALS) GO=/path/to/bin/go"; exit 127; }

# deps installs what the tests need and is a no-op when it is all there.
deps: $(VERSITYGW) $(KUBE_APISERVER)
	@if ! command -v kubectl >/dev/null 2>&1; then \
		echo "kubectl not found: the Kubernetes tests need it on PATH (v1.32 or later)"; \
		if [ "$$CI" = true ]; then exit 1; fi; \
	fi
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(VERSITYGW):
	@echo "installing versitygw $(VERSITYGW_VERSION) into $(dir $@)"
	GOBIN=$(dir $@) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

$(KUBE_APISERVER):
	@echo "building kube-apiserver $(KUBE_VERSION) into $(dir $@)"
	GO=$(GO) sh hack/build-kube-apiserver.sh $(KUBE_VERSION) $@

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
	cd packaging && $(GO) vet ./...

test: go-check deps vet check-generate unit unit-nocgo package e2e

# TEST_LOGS: each test run's whole output. hack/gotest-failures.sh tees it
# there and, when the run fails, repeats each failed test's first lines at
# the end (CI shows the end of the output; a failed test's cleanup logs
# would otherwise push its reason out of view).
TEST_LOGS ?= $(CURDIR)/dist/test-logs

unit:
	hack/gotest-failures.sh $(TEST_LOGS)/unit.log $(GO) test -race -count=1 $$($(GO) list ./... | grep -v /test/)

# unit-nocgo: the evidence format and the auditor's verifier build and pass
# without cgo (and TestEvidenceNeedsNoCgo fails on an import of SQLite).
unit-nocgo:
	CGO_ENABLED=0 $(GO) test -count=1 ./journal/evidence/... ./cmd/interlock-verify/

# What e2e tests leave for a person to look at (the summary's screenshot)
# is kept in dist/e2e-artifacts, one directory per test.
INTERLOCK_ARTIFACTS ?= $(CURDIR)/dist/e2e-artifacts
export INTERLOCK_ARTIFACTS

# The timeout is per package: on a 2-core machine test/e2e (about 10
# minutes alone) shares the CPUs with test/adversarial and ran past 15.
e2e: build
	hack/gotest-failures.sh $(TEST_LOGS)/e2e.log $(GO) test -count=1 -timeout 30m ./test/...

# bench: TCP passthrough, direct and through interlock, then shipping to the
# fleet hub (bench-hub), then connect latency from a container against a
# host process (ctrbench), then kubectl against a kubernetes target
# (bench-kube) (docs/benchmarks.md).
# BEFORE=PATH adds an older interlock binary as a third side in the same
# rounds, for before/after figures: make bench BEFORE=/tmp/interlock-before
bench: build deps
	$(GO) run ./test/bench/tcpbench -interlock ./$(BIN)$(if $(BEFORE), -before $(BEFORE))
	$(GO) run ./test/bench/hubbench -interlock ./$(BIN)
	$(GO) run ./test/bench/ctrbench -interlock ./$(BIN)
	$(GO) run ./test/bench/kubebench -interlock ./$(BIN)

# bench-kube: kubectl get latency and a 100 MiB cat through kubectl exec,
# direct against a real kube-apiserver and through interlock
# (docs/benchmarks.md).
bench-kube: build deps
	$(GO) run ./test/bench/kubebench -interlock ./$(BIN)

# bench-journal: durable and batched append, verify and export, with the
# disk's fsync latency measured in the same run (docs/benchmarks.md).
bench-journal:
	$(GO) run ./test/bench/journalbench

# bench-policy: rule evaluation with 100 rules, and masking a 100,000-row
# result against the same query unmasked and direct (docs/benchmarks.md).
bench-policy: build deps
	$(GO) run ./test/bench/policybench -interlock ./$(BIN)

# bench-pg: PostgreSQL through interlock, PgBouncer (session mode) and
# direct, side by side (docs/benchmarks.md).
bench-pg: build deps
	@dpkg -s pgbouncer >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; }
	$(GO) run ./test/bench/pgbench -interlock ./$(BIN)

# bench-ssh: ssh/scp through interlock and direct, side by side, against a
# real sshd on 127.0.0.3 (docs/benchmarks.md).
bench-ssh: build deps
	$(GO) run ./test/bench/sshbench -interlock ./$(BIN)

# bench-hub: shipping to the fleet hub against the journal's durable
# append rate, with the hub's and PostgreSQL's CPU (docs/benchmarks.md).
bench-hub: build deps
	$(GO) run ./test/bench/hubbench -interlock ./$(BIN)

# console-assets refreshes the terminal player the hub's web console
# serves (hub/console/assets, embedded in the binary and committed) from
# npm's asciinema-player package: its bundle, stylesheet and license.
# npm checks the package's integrity against the registry's.
ASCIINEMA_PLAYER_VERSION := 3.18.0
console-assets:
	@tmp=$$(mktemp -d) && trap 'rm -rf $$tmp' EXIT && cd $$tmp && \
	npm pack --silent asciinema-player@$(ASCIINEMA_PLAYER_VERSION) >/dev/null && \
	tar xzf asciinema-player-$(ASCIINEMA_PLAYER_VERSION).tgz && \
	cp package/dist/bundle/asciinema-player.min.js package/dist/bundle/asciinema-player.css $(CURDIR)/hub/console/assets/ && \
	cp package/LICENSE $(CURDIR)/hub/console/assets/asciinema-player.LICENSE && \
	echo $(ASCIINEMA_PLAYER_VERSION) > $(CURDIR)/hub/console/assets/asciinema-player.VERSION
	@echo "hub/console/assets: asciinema-player $(ASCIINEMA_PLAYER_VERSION)"

# generate rebuilds the BPF objects and Go bindings from bpf/*.c.
generate: deps-gen
	cd bpf && $(GO) generate ./...

# check-generate fails when the committed BPF objects do not match bpf/*.c.
check-generate: generate
	@git diff --exit-code --stat -- bpf/ || { echo "bpf/ is stale: run 'make generate' and commit the result"; exit 1; }

# package builds dist/interlock_VERSION-1_amd64.deb and
# dist/interlock-VERSION-1.x86_64.rpm (packaging/nfpm.yaml, built with
# nfpm's library by packaging/cmd/mkpkg, a module of its own so that nfpm's
# dependencies stay out of interlock's).
PKG_VERSION ?= $(shell sh packaging/version.sh)

package:
	@rm -f dist/*.deb dist/*.rpm
	CGO_ENABLED=1 GOOS=linux GOARCH=amd64 $(GO) build -trimpath -ldflags '-s -w -X main.version=$(PKG_VERSION)' -o dist/build/interlock ./cmd/interlock
	cd packaging && $(GO) run ./cmd/mkpkg -root .. -bin ../dist/build/interlock -version '$(PKG_VERSION)' -out ../dist

clean:
	rm -rf bin dist

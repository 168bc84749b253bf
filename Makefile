# statefun: everything a contributor runs. Tools are pinned in go.mod
# (protoc-gen-go, protoc-gen-go-grpc) and tools/go.mod (buf, golangci-lint),
# so a fresh machine needs only Go.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

BUF := go tool -modfile=tools/go.mod buf
GOLANGCI_LINT := go tool -modfile=tools/go.mod golangci-lint
# Generated Go lives next to the protos it comes from.
GENERATED_DIRS := gen testdata examples
# Stale output is deleted before generating, except gen/: the plugin itself
# is built from it (protoc-gen-go rewrites it in place).
STALE_DIRS := testdata examples

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-15s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: generate
generate: ## Regenerate all Go code from the protos (annotations, testdata, examples).
	@# Generate into a scratch directory first: a mistake in a proto then
	@# fails here and leaves the committed code alone.
	rm -rf .generate.tmp
	$(BUF) generate -o .generate.tmp
	find $(STALE_DIRS) -type f \( -name '*.pb.go' -o -name '*.statefun.go' \) -delete 2>/dev/null || true
	cp -R .generate.tmp/. .
	rm -rf .generate.tmp
	$(BUF) format -w

.PHONY: test
test: ## Run every test, with the race detector (starts the local Postgres and NATS if they are down, installs chromium for the console's browser tests).
	.ci/ensure-postgres
	.ci/ensure-nats
	.ci/ensure-chromium
	STATEFUN_REQUIRE_BROWSER=1 go test -race -count=1 ./...

.PHONY: screenshots
screenshots: ## Rewrite the console's screenshots in docs/console from its tests' fake data.
	.ci/ensure-chromium
	go test -count=1 -run '^TestScreenshots$$' ./runtime/internal/console/ -args -screenshots=$(CURDIR)/docs/console

.PHONY: reliability
reliability: ## Run the reliability suite alone, longer scenarios included (kill -9, outages, retries with and without idempotency keys, a cluster's failures, SIGTERM, hostile input; about 2 minutes) and print its figures.
	.ci/ensure-postgres
	@report=$$(mktemp); trap 'rm -f "$$report"' EXIT; \
	STATEFUN_RELIABILITY_REPORT=$$report go test -race -count=1 ./reliability/ -long; \
	cat "$$report"

# Every fuzz target, as package:function. make test replays their seeds;
# make fuzz explores for FUZZTIME each.
FUZZTIME ?= 30s
FUZZ_TARGETS := \
	./protoc-gen-statefun/internal/generator:FuzzGenerateFromSource \
	./protoc-gen-statefun/internal/generator:FuzzGenerateFromDescriptor \
	./runtime:FuzzAddItemWire \
	./runtime:FuzzRequestWire \
	./runtime:FuzzStoredEvent \
	./runtime/store/embedded:FuzzRefRoundTrip \
	./runtime/store/embedded:FuzzDamagedRecord \
	./runtime/store/postgres:FuzzRefRoundTrip \
	./runtime/internal/jwtauth:FuzzBearerToken \
	./runtime/internal/jwtauth:FuzzVerify

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (default 30s; make fuzz FUZZTIME=5m).
	.ci/ensure-postgres
	@for target in $(FUZZ_TARGETS); do \
		pkg=$${target%%:*}; fn=$${target##*:}; \
		echo "== $$fn ($$pkg)"; \
		go test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg 2>&1 \
			| awk '/^fuzz: elapsed/ { last = $$0; next } { print } END { if (last) print last }'; \
	done

.PHONY: mutants
mutants: ## Check the invariant tests can fail: apply each mutation in reliability/mutants, expect its tests to fail (about 4 minutes).
	.ci/ensure-postgres
	go run ./reliability/mutants

.PHONY: bench
bench: ## Run the benchmarks (not part of test; about 14 minutes) and rewrite BENCHMARKS.md and bench/results/.
	.ci/ensure-postgres
	go run ./bench

.PHONY: bench-cluster
bench-cluster: ## Run only the cluster benchmarks (about 3 minutes), merge them into bench/results/results.json and rewrite BENCHMARKS.md.
	.ci/ensure-postgres
	go run ./bench -only cluster

.PHONY: bench-http
bench-http: ## Run only the HTTP/JSON cells (Connect JSON over HTTP/1.1 and h2c; about 2 minutes), merge them into bench/results/results.json and rewrite BENCHMARKS.md.
	.ci/ensure-postgres
	go run ./bench -only http

.PHONY: bench-go
bench-go: ## Run only the runtime's Go benchmarks (about 6 minutes), merge them into bench/results/results.json and rewrite BENCHMARKS.md.
	.ci/ensure-postgres
	go run ./bench -only go

.PHONY: bench-scale
bench-scale: ## Measure memory and recovery at scale (not part of bench): 1M carts of 100 events in database statefun_scale (written once, 18 minutes on a busy 2-core machine, then reused), then the server's cold loads, RSS and passivation (31 minutes); writes bench/results/scale.json and rewrites BENCHMARKS.md.
	.ci/ensure-postgres
	go run ./bench/cmd/scaleload
	go run ./bench -render-only

.PHONY: lint
lint: ## Lint Go (golangci-lint) and protos (buf lint, buf format).
	$(GOLANGCI_LINT) run ./...
	$(BUF) lint
	$(BUF) format --diff --exit-code

.PHONY: checkgenerate
checkgenerate: generate ## Fail when make generate changes anything.
	@if [[ -n "$$(git status --porcelain -- $(GENERATED_DIRS) annotations)" ]]; then \
		echo "make generate changed files; run it and commit the result:"; \
		git status --porcelain -- $(GENERATED_DIRS) annotations; \
		git --no-pager diff --stat -- $(GENERATED_DIRS); \
		exit 1; \
	fi

# The git ref make breaking compares the examples' protos with; HEAD passes
# on a clean tree and catches uncommitted edits.
BREAKING_AGAINST ?= HEAD

.PHONY: breaking
breaking: ## Refuse proto changes in examples/*/proto that would break stored data, against git ref BREAKING_AGAINST (default HEAD).
	go run ./protoc-gen-statefun breaking --against-git $(BREAKING_AGAINST) examples/*/proto

.PHONY: tidy
tidy: ## Tidy both modules.
	go mod tidy
	cd tools && go mod tidy

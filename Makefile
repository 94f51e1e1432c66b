VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -ldflags "-X main.version=$(VERSION)"

.PHONY: build run test bench lint loadtest fuzz mutate promcheck

FUZZTIME ?= 20s
FUZZ_TARGETS := api:FuzzTrackHandler api:FuzzBatchHandler api:FuzzCreateCampaign tracker:FuzzParseTime

# Mutation testing (docs/TESTING.md); settings in .gremlins.yaml. Not part of
# `make test`: on two cores a run takes an hour or more. MUTATE_PKGS narrows
# the packages, MUTATE_FLAGS passes gremlins flags (-E '^persist\.go' skips
# a file).
GREMLINS_VERSION := v0.6.0
GREMLINS := bin/gremlins-$(GREMLINS_VERSION)
MUTATE_PKGS ?= sketch stats store tracker
MUTATE_FLAGS ?=
# -count=1: gremlins times the coverage run to set each mutant's timeout, so
# it must not come from the test cache. -short trims the statistical tests;
# the slowest sketch tests (a concurrency race and two large statistical
# checks) are skipped for every mutant.
MUTATE_GOFLAGS := -count=1 -short -skip=^(TestWriteToDuringTestAndAdd|TestFalsePositiveRate|TestBloomMemory)$$

build:
	go build $(LDFLAGS) -o bin/impressiond ./cmd/impressiond

# DATA is the data directory: one per set of -dedup flags (README, Quick start).
DATA ?= ./data

run: build
	./bin/impressiond -data-dir $(DATA) $(ARGS)

test:
	go vet ./...
	go test -race ./...
	@# What -race cannot measure (allocations, heap sizes) or only slows
	@# tenfold (the one-goroutine false-positive rate), in a plain build.
	go test -count=1 -run 'DoesNotAllocate|BytesMatchesHeap|FalsePositiveRate' ./api ./sketch ./tracker
	IMPRESSIOND_TEST_STORE=redis go test -race -count=1 ./api
	@# The Redis tests again with every store clock a year ahead, then a
	@# year back: a test that mixes a fixed date with a real clock fails now,
	@# not on the day the date passes.
	for shift in 8760h -8760h; do \
		IMPRESSIOND_TEST_CLOCK_SHIFT=$$shift IMPRESSIOND_TEST_STORE=redis go test -race -count=1 ./api ./tracker ./store/redisstore || exit 1; \
	done

bench:
	go test -run '^$$' -bench . -benchmem ./...

loadtest:
	bash loadtest/smoke.sh

fuzz:
	@for pt in $(FUZZ_TARGETS); do \
		p=$${pt%%:*}; t=$${pt#*:}; \
		echo "fuzzing $$t in ./$$p for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./$$p || exit 1; \
	done

$(GREMLINS):
	GOBIN=$(CURDIR)/bin go install github.com/go-gremlins/gremlins/cmd/gremlins@$(GREMLINS_VERSION)
	mv bin/gremlins $@

# store runs with only Go's own tools on PATH: gremlins gathers coverage over
# ./store/..., and without redis-server store/redisstore's tests skip.
mutate: $(GREMLINS)
	@fail=0; for p in $(MUTATE_PKGS); do \
		echo "== mutation testing ./$$p"; \
		path="$$PATH"; [ "$$p" = store ] && path="$$(go env GOROOT)/bin"; \
		PATH="$$path" CI= GOFLAGS='$(MUTATE_GOFLAGS)' $(CURDIR)/$(GREMLINS) unleash \
			-S lt $(MUTATE_FLAGS) ./$$p || fail=1; \
	done; exit $$fail

# `promtool check metrics` on a scrape after traffic on every route (Debian
# package prometheus). `make test` runs the same test, which skips without
# promtool unless CI=true; .ci/run installs it.
promcheck:
	CI=true go test -count=1 -run '^TestPromtoolCheckMetrics$$' -v ./api

lint:
	go vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed on the files above"; exit 1; }

# Node tools that check docs/openapi.yaml, installed by npm into bin/ at
# pinned versions, so that a run does not change with the registry's
# latest release. Neither is part of `make test`: both need Node and npm.
PRISM_VERSION := 5.14.2
REDOCLY_VERSION := 2.77.0
PRISM := bin/prism-$(PRISM_VERSION)/node_modules/.bin/prism
REDOCLY := bin/redocly-$(REDOCLY_VERSION)/node_modules/.bin/redocly

.PHONY: prism lint-openapi

$(PRISM):
	npm install --no-audit --no-fund --prefix bin/prism-$(PRISM_VERSION) @stoplight/prism-cli@$(PRISM_VERSION)

$(REDOCLY):
	npm install --no-audit --no-fund --prefix bin/redocly-$(REDOCLY_VERSION) @redocly/cli@$(REDOCLY_VERSION)

# Traffic on every route through Prism's validating proxy in front of the
# built server; fails on any violation (loadtest/prism.sh).
prism: build $(PRISM)
	PRISM=$(PRISM) BIN=bin/impressiond bash loadtest/prism.sh

# The rules are in redocly.yaml.
lint-openapi: $(REDOCLY)
	$(REDOCLY) lint docs/openapi.yaml

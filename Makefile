VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -ldflags "-X main.version=$(VERSION)"

.PHONY: build run test bench lint loadtest fuzz

FUZZTIME ?= 20s
FUZZ_TARGETS := FuzzTrackHandler FuzzBatchHandler FuzzCreateCampaign FuzzParseTime

build:
	go build $(LDFLAGS) -o bin/impressiond ./cmd/impressiond

run: build
	./bin/impressiond -data-dir ./data $(ARGS)

test:
	go vet ./...
	go test -race ./...
	@# What -race cannot measure: allocations and heap sizes, in a plain build.
	go test -count=1 -run 'DoesNotAllocate|BytesMatchesHeap' ./api ./sketch
	IMPRESSIOND_TEST_STORE=redis go test -race -count=1 ./api
	@# The Redis tests again with every store clock a year ahead, then a
	@# year back: a test that mixes a fixed date with a real clock fails now,
	@# not on the day the date passes.
	for shift in 8760h -8760h; do \
		IMPRESSIOND_TEST_CLOCK_SHIFT=$$shift IMPRESSIOND_TEST_STORE=redis go test -race -count=1 ./api ./store/redisstore || exit 1; \
	done

bench:
	go test -run '^$$' -bench . -benchmem ./...

loadtest:
	bash loadtest/smoke.sh

fuzz:
	@for t in $(FUZZ_TARGETS); do \
		echo "fuzzing $$t for $(FUZZTIME)"; \
		go test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) ./api || exit 1; \
	done

lint:
	go vet ./...
	@test -z "$$(gofmt -l .)" || { gofmt -l .; echo "gofmt needed on the files above"; exit 1; }

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
	IMPRESSIOND_TEST_STORE=redis go test -race -count=1 ./api

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

# The two commands of the README: `make run` and `make test`.
GO       ?= go
BIN      := bin/refkeeper
VERSION  ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS  := -X main.version=$(VERSION)
# ./... skips directories named testdata; the test helpers are a package too.
PKGS     := ./... ./testdata
# Flags for `make run`; override with `make run ARGS="--listen 0.0.0.0:8080"`.
ARGS     ?=

.PHONY: deps build build-job install run test vet fmt-check fuzz soak bench gobench bench-fetch clean

deps:
	@bash scripts/install-deps.sh

build: deps
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/refkeeper

## build-job: the job binary (client commands only), static, without cgo or libgit2:
## what a CI job's image needs besides git (the Dockerfile's `job` target).
build-job:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)" -o bin/refkeeper-job ./cmd/refkeeper-job

## install: build and copy refkeeper to $(PREFIX)/bin (default /usr/local/bin;
## `make install PREFIX=$$HOME/.local` needs no root), and say when that is not on PATH.
PREFIX ?= /usr/local
install: build
	install -d $(DESTDIR)$(PREFIX)/bin
	install -m 0755 $(BIN) $(DESTDIR)$(PREFIX)/bin/refkeeper
	@case ":$$PATH:" in *":$(PREFIX)/bin:"*) echo "refkeeper installed: $(PREFIX)/bin/refkeeper";; \
	  *) echo "refkeeper installed in $(PREFIX)/bin, which is not on PATH: export PATH=\"$(PREFIX)/bin:\$$PATH\"";; esac

## run: build and serve on the embedded defaults, with the demo repository.
run: build
	./$(BIN) serve --demo $(ARGS)

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed: $$out"; exit 1; fi

vet: deps
	$(GO) vet $(PKGS)

## test: every test, with the race detector, against real git and redis-server.
## What tests keep (the web page's screenshots) goes to test-output/_artifacts/.
test: deps fmt-check vet
	@mkdir -p test-output
	$(GO) test -race -count=1 -timeout 20m -artifacts -outputdir $(CURDIR)/test-output $(PKGS)

## fuzz: every fuzz target for FUZZTIME each (the seed corpora also run in `make test`).
## The budget is a count of inputs ("Nx"), not a duration: Go 1.26's fuzz
## coordinator can report "context deadline exceeded" as a failure when a
## duration runs out while a worker is still busy (go.dev/issue/75804, fixed
## in Go 1.27); a count has no deadline to race. FUZZTIME=30s still works.
FUZZTIME ?= 100000x
FUZZ_TARGETS := gitops:FuzzParseProjectName gitops:FuzzParseDecimalID gitops:FuzzParseObjectID \
                api:FuzzDecodePinBody api:FuzzDecodeFinishBody githttp:FuzzSplitGitPath \
                githttp:FuzzFetchScopeFilter pktline:FuzzDecode
fuzz: deps
	@for t in $(FUZZ_TARGETS); do \
	  pkg=$${t%%:*}; fn=$${t##*:}; \
	  echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) ./$$pkg || exit 1; \
	done

## soak: many pipelines against two replicas with kill -9 and Redis restarts; SOAK=5m for longer.
SOAK ?= 60s
soak: deps
	REFKEEPER_SOAK=$(SOAK) $(GO) test -count=1 -timeout 0 -run '^TestSoak$$' -v ./systest

## bench: refkeeper side by side with the git paths it replaces, at the targets' sizes
## (BENCH=smoke for small ones); prints a markdown table, also in bench-results/latest.md.
## BENCH_ONLY=api, BENCH_ONLY=expiry or BENCH_ONLY=mirror runs one part (expiry: deletions by tasks at
## expires_at under `serve --role all`, on tmpfs and on disk).
BENCH ?= full
BENCH_ONLY ?=
bench: deps
	REFKEEPER_BENCH=$(BENCH) REFKEEPER_BENCH_ONLY=$(BENCH_ONLY) $(GO) test -count=1 -timeout 0 -run '^TestBench(Merge|Mirror|PackCache)?$$' -v ./systest

## gobench: Go benchmarks of the gitops primitives and the Redis pin transitions.
gobench: deps
	$(GO) test -run '^$$' -bench . -benchtime 2s ./gitops ./refs

## bench-fetch: time a runner's fetch of one ref with 100k refs against one ref.
bench-fetch: deps
	bash scripts/bench-fetch.sh $(or $(N),100000) $(or $(ROUNDS),20)

clean:
	rm -rf bin

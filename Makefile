# Relais: the two set-up commands are `make run` and `make test`.
GO        ?= go
GOSEC     := github.com/securego/gosec/v2/cmd/gosec@v2.30.0
PKGS      := ./...
# Slow suites are included; CI runs everything. TESTFLAGS can narrow a run.
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: run build test unit lint vet fmt-check gosec bench

## run: start Relais on the embedded default (SQLite in ./relais-data, self-signed TLS on https://127.0.0.1:8443)
run:
	$(GO) run ./cmd/relais serve

## build: build the relais binary into ./relais
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o relais ./cmd/relais

## test: the whole suite: static checks, then every test on SQLite and PostgreSQL
test: lint unit

unit:
	$(GO) test $(TESTFLAGS) $(PKGS)

lint: vet fmt-check gosec

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

gosec:
	$(GO) run $(GOSEC) -quiet -exclude-generated $(PKGS)

## bench: the benchmarks, with their references (see bench/README.md)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./bench/... ./internal/keys/

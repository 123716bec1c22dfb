# Relais: the two set-up commands are `make run` and `make test`.
GO        ?= go
GOSEC     := github.com/securego/gosec/v2/cmd/gosec@v2.30.0
GOVULN    := golang.org/x/vuln/cmd/govulncheck@v1.9.0
# The vulnerability database, as the golang.org/x/vulndb module from the Go
# module proxy (vuln.go.dev may be unreachable). Raise it to take new
# advisories: go list -m -f '{{.Version}}' golang.org/x/vulndb@latest
VULNDB    ?= v0.0.0-20261105234957-e22db6528018
# go.mod names the toolchain that fixes the standard library's known
# vulnerabilities; let the go command fetch it through the module proxy.
export GOTOOLCHAIN := auto
PKGS      := ./...
# Slow suites are included; CI runs everything. TESTFLAGS can narrow a run.
TESTFLAGS ?= -count=1 -timeout 20m

.PHONY: run build build-hsm test unit test-key-providers lint vet fmt-check gosec vulncheck bench

## run: start Relais on the embedded default (SQLite in ./relais-data, self-signed TLS on https://127.0.0.1:8443)
run:
	$(GO) run ./cmd/relais serve

## build: build the relais binary into ./relais
build:
	CGO_ENABLED=0 $(GO) build -trimpath -o relais ./cmd/relais

## build-hsm: the same with PKCS#11 (HSM) support, which needs cgo and a C compiler
build-hsm:
	CGO_ENABLED=1 $(GO) build -trimpath -o relais ./cmd/relais

## test: the whole suite: static checks, then every test on SQLite and PostgreSQL
test: lint unit test-key-providers

unit:
	$(GO) test $(TESTFLAGS) $(PKGS)

## test-key-providers: the contacts and tenant-key suites again under Vault transit (an
## in-process fake) and PKCS#11 (SoftHSM2: Debian's softhsm2 package, cgo)
test-key-providers:
	RELAIS_TEST_KEY_PROVIDER=vault $(GO) test $(TESTFLAGS) ./internal/contacts/ ./internal/tenants/
	RELAIS_TEST_KEY_PROVIDER=pkcs11 $(GO) test $(TESTFLAGS) ./internal/contacts/ ./internal/tenants/

lint: vet fmt-check gosec vulncheck

vet:
	$(GO) vet $(PKGS)

fmt-check:
	@out="$$(gofmt -l .)"; if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

gosec:
	$(GO) run $(GOSEC) -quiet -exclude-generated $(PKGS)

vulncheck:
	@$(GO) mod download golang.org/x/vulndb@$(VULNDB)
	@db="$$(mktemp -d)"; out="$$(mktemp)"; trap 'rm -rf "$$db" "$$out"' EXIT; \
	$(GO) run golang.org/x/vulndb/cmd/indexdb@$(VULNDB) -vulns "$$($(GO) env GOMODCACHE)/golang.org/x/vulndb@$(VULNDB)/data/osv" -out "$$db" && \
	$(GO) run $(GOVULN) -db "file://$$db" -format json $(PKGS) > "$$out" && \
	$(GO) run ./internal/tools/vulnfilter -accept .govulncheck-accept < "$$out"

## bench: the benchmarks, with their references (see bench/README.md)
bench:
	$(GO) test -run '^$$' -bench . -benchmem ./bench/... ./internal/keys/

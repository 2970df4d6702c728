# Two commands do all set-up on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8501

.PHONY: run test test-fast bench bench-ui gpu-check train clean-venv

$(VENV)/.runtime: requirements.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

## Start the dashboard on the bundled model (http://localhost:$(PORT)).
run: $(VENV)/.runtime
	$(PY) -m streamlit run dashboard.py --server.headless true --server.port $(PORT)

## The whole test suite: unit, slow, parity, UI (AppTest) and real-browser tests.
test: $(VENV)/.dev
	$(PY) -m pytest

## Fast unit tests only.
test-fast: $(VENV)/.dev
	$(PY) -m pytest -m "not slow and not e2e"

## Speed figures side by side with pytorch-grad-cam and captum (minutes).
bench: $(VENV)/.dev
	$(PY) -m cnnviz_core.bench

## UI speed as a visitor feels it: Playwright + Chromium against a real `streamlit run` (minutes).
bench-ui: $(VENV)/.dev
	$(PY) -m cnnviz_ui.bench

## On a machine with CUDA: every method, Deep Dream and style on CUDA vs CPU (r >= 0.999), GPU bench figures.
gpu-check: $(VENV)/.dev
	$(PY) -m cnnviz_core.gpucheck

## Retrain our bundled models (about 10 minutes each on 2 cores).
train: $(VENV)/.runtime
	$(PY) -m cnnviz_core.train shapes-cnn
	$(PY) -m cnnviz_core.train shapes-cnn-biased

clean-venv:
	rm -rf $(VENV)

# npcnn — the two commands of the quick start are `make run` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
HOST   ?= 127.0.0.1
PORT   ?= 5000

.PHONY: install run dev test test-fast lint format bench train train-numbers data clean system-packages

# Create the virtual environment and install everything once (re-done when the requirements change).
$(VENV)/.installed: requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $@

install: $(VENV)/.installed

# Serve the app in production: waitress in one process per core (WORKERS=N to choose), one
# /metrics for all of them (its PROMETHEUS_MULTIPROC_DIR is made and removed by app.py).
run: install
	$(PY) app.py --production --host $(HOST) --port $(PORT) --workers $(or $(WORKERS),0)

# Serve the app with Flask's development server (auto-reload, debugger off).
dev: install
	$(PY) app.py --host $(HOST) --port $(PORT)

# Debian packages the tests use, installed when missing and we are root (otherwise those tests
# skip): Chromium for the browser tests, PostgreSQL for the corrections store's tests, and the
# font packages the synthetic training digits are rendered from (npcnn/digits/synth.py).
SYSTEM_PACKAGES := chromium postgresql fonts-dejavu-core fonts-dejavu-extra fonts-liberation2 \
	fonts-freefont-ttf fonts-urw-base35 fonts-texgyre
system-packages:
	@if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
		missing=$$(for p in $(SYSTEM_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
		if [ -n "$$missing" ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
			apt-get install -y -qq $$missing >/dev/null; fi; fi

# The whole suite: both kernel backends, real MNIST, the shipped model, the API and a real browser.
test: install system-packages data
	$(PY) -m pytest -n 2 --dist loadfile -q

# Only the quick tests (no real MNIST, no browser).
test-fast: install
	$(PY) -m pytest -n 2 -q -m "not slow"

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

data: install
	$(PY) -m npcnn.digits.data

train: install
	$(PY) train_model.py

train-numbers: install
	$(PY) train_number_reader.py
	$(PY) train_number_reader.py --pictures 48000 --out weights/number_reader_2.npz
	$(PY) train_number_sequence.py

bench: install
	$(PY) benchmarks/bench_train.py --arch keras-small --backend numba
	$(PY) benchmarks/bench_train.py --arch keras-small --backend numpy

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis build *.egg-info

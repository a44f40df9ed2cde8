# Set-up and everyday commands. Every target sets up .venv first (idempotent).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.spikebench-installed

.PHONY: setup run test bench bench-gpu lint docs clean

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# the CPU build on this machine; any other torch pulls gigabytes of CUDA packages
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -c constraints.txt -e '.[test,ray,tracking]'
	# NeuroBench's metric code, for the tests' cross-check only: without its dependencies,
	# which would add torchaudio 2.11.1 (its library does not load with torch 2.13.0)
	$(PY) -m pip install --quiet --no-deps neurobench==2.3.0 snntorch==1.0.0
	# FAB-T (the robust suites' attacks): its metadata asks for torchvision, which it never imports
	$(PY) -m pip install --quiet --no-deps torchattacks==3.5.1
	# SpikingJelly 2's OTTT and SLTT neurons, the tests' cross-check of ours (and a benchmark
	# peer): without its dependencies (torchvision, which cannot load here), plus loguru
	$(PY) -m pip install --quiet --no-deps spikingjelly==2.0.0 loguru==0.7.3
	# the compiled time loops (C, about a second; without a compiler: one note, Python loops)
	$(PY) -m spikebench.native
	# real Fashion-MNIST from Debian where apt is at hand (optional: skipped otherwise)
	-test -d /usr/share/datasets/fashion-mnist || { [ "$$(id -u)" = 0 ] && \
		command -v apt-get >/dev/null && apt-get install -y -qq dataset-fashion-mnist \
		>/dev/null 2>&1; } || echo "note: Fashion-MNIST (dataset-fashion-mnist) not installed"
	touch $(STAMP)

setup: $(STAMP)

run: setup            ## the main job: default suite on the embedded data -> spikebench-runs/default
	$(VENV)/bin/spikebench run

test: setup           ## the test suite (about 6 minutes on 2 cores)
	$(PY) -m pytest -q

bench: setup          ## speed/memory benchmarks (pytest-benchmark; not part of the tests)
	$(PY) -m pytest benchmarks -q --benchmark-only --benchmark-columns=mean,stddev,rounds \
		--benchmark-sort=name

bench-gpu: setup      ## the step benchmarks and a small suite on a CUDA GPU -> gpu-bench/gpu-benchmarks.md
	$(PY) benchmarks/gpu.py --out gpu-bench

docs: setup          ## regenerate the CLI reference page from the parser
	$(PY) -m spikebench.clidoc > docs/cli.md

lint: setup
	$(VENV)/bin/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) .pytest_cache .benchmarks

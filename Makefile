# Two commands on a fresh machine: `make demo` and `make test`. Both build .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench bench-quality clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e ".[test,bench,track]"
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/pyro-gen fit vae --data digits --latent-dim 2 --epochs 60 --out runs/demo-vae
	$(BIN)/pyro-gen compare vae --data digits --estimators reparam,analytic-kl,score,score-baseline,stl,iwae:5,dreg:5 --out runs/demo-estimators

test: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .

bench: $(STAMP)
	$(BIN)/python benchmarks/overhead.py --out benchmarks/results/overhead.json
	$(BIN)/python benchmarks/throughput.py --out benchmarks/results/throughput.json

bench-quality: $(STAMP)
	$(BIN)/python benchmarks/mnist_quality.py --mnist ../shared/data/mnist --out benchmarks/results/mnist_quality.json

clean:
	rm -rf $(VENV) runs .pytest_cache

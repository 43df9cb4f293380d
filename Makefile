# Two commands on a fresh machine: `make book` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv data book test test-py test-nb train sync benchmark clean

help:
	@echo "make book   - set up .venv, fetch MNIST if needed, build the HTML book into _build/html"
	@echo "make test   - the same set-up, then pytest and every notebook under nbval (quick mode)"
	@echo "make train  - train the article's MLP GAN with the command line (runs/mlp)"
	@echo "make sync   - rewrite every notebook's Colab cell from the repository URL in _config.yml"
	@echo "make benchmark - training throughput: article loop vs engine vs bare loop"

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements.txt
	touch $(STAMP)

venv: $(STAMP)

data: $(STAMP)
	$(BIN)/python -m gan_utils data

book: data
	$(BIN)/jupyter-book build . -W -n --keep-going

test: data
	GAN_QUICK=1 $(BIN)/python -m pytest -p no:cacheprovider tests
	GAN_QUICK=1 $(BIN)/python -m pytest -p no:cacheprovider --nbval-lax notebooks

train: data
	$(BIN)/python -m gan_utils train --model mlp --epochs 10 --out runs/mlp --resume

sync: $(STAMP)
	$(BIN)/python scripts/sync_notebooks.py

benchmark: data
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf _build

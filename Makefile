# Two commands on a fresh machine: `make book` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
export PIP_DISABLE_PIP_VERSION_CHECK := 1

.PHONY: help venv data book test test-py test-nb test-colab-widgets test-matrix matrix-leg train sync benchmark clean

help:
	@echo "make book   - set up .venv, fetch MNIST if needed, build the HTML book into _build/html"
	@echo "make test   - the same set-up, then pytest and every notebook under nbval (quick mode, then classroom mode)"
	@echo "make test-colab-widgets - the widget tests on Colab's ipywidgets 7.7.1 and ipykernel 6.17.1 (part of make test)"
	@echo "make test-matrix - pytest on the oldest supported torch/Python/NumPy and on Colab's versions (CPU wheels)"
	@echo "make train  - train a conditional DCGAN in under 10 minutes on 2 CPU cores (runs/train), print its FID, draw its digits"
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
	# classroom mode: every chapter again, with the pretrained generators instead of training
	GAN_QUICK=1 GAN_SKIP_TRAINING=1 $(BIN)/python -m pytest -p no:cacheprovider --nbval-lax notebooks
	$(MAKE) test-colab-widgets

# Colab's widget stack (ipywidgets 7.7.1, ipykernel 6.17.1) in a second venv that sees .venv's packages
# behind its own: the widget tests, including the ones that drive a live kernel by comm messages.
COLAB_VENV := .venv-colab-widgets
test-colab-widgets: $(STAMP)
	test -x $(COLAB_VENV)/bin/python || $(BIN)/python -m venv $(COLAB_VENV)
	$(COLAB_VENV)/bin/python -m pip install --quiet "ipywidgets==7.7.1" "ipykernel==6.17.1"
	$(BIN)/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])" > "$$($(COLAB_VENV)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/zz_main_venv.pth"
	EXPECT_IPYWIDGETS=7.7.1 PYDEVD_DISABLE_FILE_VALIDATION=1 PYTHONPATH=$(CURDIR) $(COLAB_VENV)/bin/python -m pytest -p no:cacheprovider -q tests/test_widgets.py tests/test_widgets_kernel.py

# The version matrix: the floors declared in pyproject.toml and Colab's stack, each in its own venv
# (.venv-oldest, .venv-colab), torch from the CPU wheel index (CUDA wheels are GBs). Needs the named
# Pythons on PATH (pyenv, setup-python). TORCH_INDEX= (empty) takes torch from PyPI instead.
TORCH_INDEX  ?= https://download.pytorch.org/whl/cpu
OLDEST_PY    ?= python3.11
OLDEST_TORCH := torch==2.4.1 torchvision==0.19.1
OLDEST_PINS  := numpy==2.0.2
COLAB_PY     ?= python3.13
COLAB_TORCH  := torch==2.11.0 torchvision==0.26.0
COLAB_PINS   := ipywidgets==7.7.1 ipykernel==6.17.1
test-matrix:
	$(MAKE) matrix-leg LEG=oldest PY=$(OLDEST_PY) TORCH_PINS="$(OLDEST_TORCH)" PINS="$(OLDEST_PINS)"
	$(MAKE) matrix-leg LEG=colab PY=$(COLAB_PY) TORCH_PINS="$(COLAB_TORCH)" PINS="$(COLAB_PINS)"

# One leg: LEG (venv suffix), PY (interpreter), TORCH_PINS (from TORCH_INDEX), PINS (from PyPI).
# The rendered-book test needs the HTML build of the main venv: the book job covers it.
matrix-leg:
	test -x .venv-$(LEG)/bin/python || $(PY) -m venv .venv-$(LEG)
	.venv-$(LEG)/bin/python -m pip install --quiet $(if $(TORCH_INDEX),--index-url $(TORCH_INDEX)) $(TORCH_PINS)
	.venv-$(LEG)/bin/python -m pip install --quiet $(PINS) -e ".[metrics,widgets]" pytest pyyaml jupyter_client ipykernel
	.venv-$(LEG)/bin/python -c "import sys, torch, torchvision, numpy; print('$(LEG): Python', sys.version.split()[0], 'torch', torch.__version__, 'torchvision', torchvision.__version__, 'numpy', numpy.__version__)"
	GAN_QUICK=1 OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} .venv-$(LEG)/bin/python -m pytest -p no:cacheprovider tests --ignore=tests/test_browser.py

# The first thing a newcomer runs: a conditional DCGAN with the book's best recipe (EMA of G with standing
# BatchNorm statistics, FID every epoch, best weights kept) at batch 64, twice the generator steps of batch
# 128 for the same images, then its best weights scored at n = 10,000. fp32: on a CPU without AMX, bf16 is
# emulated and 14 times slower. Measured: see README (2-core AMD EPYC, no AMX).
train: data
	$(BIN)/python -m gan_utils train --model cgan --epochs 2 --batch-size 64 --out runs/train --resume
	$(BIN)/python -m gan_utils evaluate --run runs/train --best
	$(BIN)/python -m gan_utils sample --run runs/train --best --n 100 --out runs/train/best_samples.png

sync: $(STAMP)
	$(BIN)/python scripts/sync_notebooks.py

benchmark: data
	$(BIN)/python benchmarks/throughput.py

clean:
	rm -rf _build

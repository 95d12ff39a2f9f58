# The README's commands. `make reproduce` runs the benchmark (dvc repro, or jasrbench launch with JOBS=N);
# `make test` runs the whole test suite. Both install what they need first.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Pinned so that no resolver swaps them (the code also runs on torch 2.11).
TORCH  ?= torch==2.14.1 torchvision==0.29.1
# facenet-pytorch pins torch<2.3 in its metadata; its code runs on current torch.
FACENET ?= facenet-pytorch==2.6.0
PYTEST_ARGS ?=
# pytest-xdist processes: whole files per process (module fixtures such as the smoke DAG stay in one);
# 0 runs the suite in this process, `auto` one per core.
TEST_WORKERS ?= 2
PROFILE ?=
# `make reproduce JOBS=N`: N stages at once through `jasrbench launch` (Dask); LAUNCH_ARGS adds its options.
JOBS ?=
LAUNCH_ARGS ?=

.PHONY: install test reproduce queue mlflow-ui benchmarks clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q --no-deps $(FACENET)
	$(PY) -m pip install -q -e '.[dev]'
	$(PY) -c "import torch, torchvision, facenet_pytorch, dlib, dvc, mlflow, skimage; print('installed: torch', torch.__version__)"
	touch $(STAMP)

# pytest exits 5 when it collected nothing: that is a failure here, not a pass.
test: install
	@$(VENV)/bin/python -m pytest -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests: failing"; exit 1; fi; exit $$rc

# `make reproduce PROFILE=cpu` switches params.yaml to another profile first (a copy of pipelines/cpu.yaml).
# The stages run `python -m jasrbench`: the environment's python comes first on PATH.
reproduce: install
	@if [ -n "$(PROFILE)" ]; then $(VENV)/bin/jasrbench profile use $(PROFILE); fi
	PATH="$(abspath $(VENV))/bin:$$PATH" $(if $(JOBS),$(VENV)/bin/jasrbench launch --workers $(JOBS) $(LAUNCH_ARGS),$(VENV)/bin/dvc repro)

# Experiments queued with `dvc exp run --queue -S KEY=VALUE` run JOBS at a time in DVC's temporary workspaces
# (raw data outside the repository linked for them first; the workers inherit this PATH).
queue: install
	$(VENV)/bin/jasrbench profile link
	PATH="$(abspath $(VENV))/bin:$$PATH" $(VENV)/bin/dvc queue start -j $(or $(JOBS),1)

# MLflow 3.17's UI opens experiments as GenAI (traces) until its sidebar switch is set to "Model training".
mlflow-ui: install
	@echo "Open http://127.0.0.1:$${MLFLOW_PORT:-5000} and set the sidebar switch to 'Model training' once (remembered)"
	MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false $(VENV)/bin/mlflow ui \
		--backend-store-uri $${MLFLOW_TRACKING_URI:-sqlite:///mlflow.db} \
		--host 127.0.0.1 --port $${MLFLOW_PORT:-5000} --workers 1

benchmarks: install
	for b in benchmarks/bench_*.py; do $(PY) $$b || exit 1; done

clean-venv:
	rm -rf $(VENV)

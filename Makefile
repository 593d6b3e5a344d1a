# SpatialFlow-Repro. The two commands that matter:
#   make repro   install (first time) + `dvc repro`: all seven tables on the embedded tiny profile
#   make test    install (first time) + the test suite (CI runs exactly this)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(CURDIR)/$(VENV)/bin
STAMP  := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | cksum | cut -d' ' -f1)

export KEDRO_DISABLE_TELEMETRY := 1
export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export MPLBACKEND := Agg
export PATH := $(BIN):$(PATH)

.PHONY: install repro test test-fast lock mlflow-ui dag clean-venv gpu-check viz

install: $(STAMP)

# requirements.lock pins every package (torch 2.14.1 / torchvision 0.29.1 included); the project itself is
# installed editable without dependencies so nothing outside the lock is resolved.
$(STAMP): requirements.lock pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip==26.3"
	$(BIN)/python -m pip install --quiet --requirement requirements.lock
	$(BIN)/python -m pip install --quiet --no-deps --no-build-isolation --editable .
	@rm -f $(VENV)/.installed-*; touch $@

# params.yaml is checked first (strict YAML, every row of the grid in the active profile): a bad grid is one
# line per problem before DVC reads the file or any stage runs. JOBS=2 (the default): two training rows at
# a time in worktrees, a core each, the longest chain of rows first, collected through DVC's run-cache
# (docs/workers.md); JOBS=1: plain `dvc repro`, one row at a time. Either way each stage prints
# "stage <k> of <n>" as it starts and ends.
JOBS ?= 2
repro: install
	python -m spatialflow_repro check-params
	export SPATIALFLOW_REPRO_PLAN="$(CURDIR)/.dvc/tmp/repro-plan.json"; \
	if [ "$(JOBS)" -gt 1 ]; then python -m spatialflow_repro rows --jobs $(JOBS); \
	else python -m spatialflow_repro plan && dvc repro; fi

# Two workers (CI has 2 cores); a test file runs in one worker, so each end-to-end file stays in order.
# scripts/test_prerequisites.sh installs what the tests need beyond the lock (Debian's chromium), or stops.
test: install
	eval "$$(scripts/test_prerequisites.sh)"; python -m pytest -n 2 --dist loadfile

test-fast: install
	eval "$$(scripts/test_prerequisites.sh)"; python -m pytest -n 2 --dist loadfile -m "not slow"

# The MLflow UI on 127.0.0.1:5000 (MLFLOW_UI_PORT to change) over MLFLOW_TRACKING_URI, else mlflow.db; once it
# answers, prints the link that opens each experiment's runs table (the model-training view). Ctrl-C stops it.
mlflow-ui: install
	python -m spatialflow_repro.mlflow_ui --port $${MLFLOW_UI_PORT:-5000}

dag: install
	dvc dag

# The Kedro pipelines in a browser: http://127.0.0.1:4141 (VIZ_PORT to change). kedro-viz is optional and
# not in the lock (it needs ipython < 9): it is installed, the first time, into $(VENV)/viz, a venv layered
# over the project's venv, which stays exactly as locked.
VIZ := $(CURDIR)/$(VENV)/viz
viz: install
	@test -x $(VIZ)/bin/python || $(BIN)/python -m venv $(VIZ)
	@$(BIN)/python -c "import sysconfig; print('import site; site.addsitedir(%r)' % sysconfig.get_paths()['purelib'])" \
	  > "$$($(VIZ)/bin/python -c "import sysconfig; print(sysconfig.get_paths()['purelib'])")/project-venv.pth"
	$(VIZ)/bin/python -c "import kedro_viz" 2>/dev/null || $(VIZ)/bin/python -m pip install --quiet kedro-viz
	$(VIZ)/bin/python -m kedro viz run --host 127.0.0.1 --port $${VIZ_PORT:-4141} --no-browser

# On a machine with an NVIDIA GPU: model bench, torchrun + NCCL step, 200 tiny-row iterations; one JSON.
gpu-check: install
	scripts/gpu_check.sh

clean-venv:
	rm -rf $(VENV)

# Re-pin every package after changing dependencies in pyproject.toml.
lock: install
	( echo "# Exact versions of every package (pip freeze --all, Python 3.11, x86_64). Regenerate: make lock"; \
	  python -m pip freeze --all --exclude-editable | grep -vE "^(pip==|-e )" ) > requirements.lock

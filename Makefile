# scaling-jax: `make demo` (the main job) and `make test`. Both bootstrap .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TPU_STAMP := $(VENV)/.installed-tpu
DEMO_OUT ?= demo_out
PYTEST_ARGS ?=

.PHONY: demo test test-fast bench experiments clean install

install: $(STAMP)

$(STAMP): setup.py
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	-$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	@touch $(STAMP)

# The tests also compile for TPU slices (tests/test_compile.py): libtpu, installed for them
# only. Where it cannot be installed those tests are skipped, with the reason.
$(TPU_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[test,tpu]' || \
	  echo "make: libtpu not installed; the TPU compile tests will be skipped" >&2
	@touch $(TPU_STAMP)

demo: $(STAMP)
	$(BIN)/scaling-jax demo --out $(DEMO_OUT)

test: $(TPU_STAMP)
	@$(BIN)/python -m pytest -n 2 $(PYTEST_ARGS); rc=$$?; \
	  if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; fi; exit $$rc

test-fast: $(TPU_STAMP)
	$(BIN)/python -m pytest -n 2 -m "not slow" $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python bench/run_all.py

# Every experiment at CPU scale (experiments/RESULTS.md): sweeps, then analyses; rerun to
# resume. EXPERIMENTS_ARGS e.g. "--only 01,04 --bootstrap 200".
EXPERIMENTS_OUT ?= runs/experiments
EXPERIMENTS_ARGS ?=
experiments: $(STAMP)
	$(BIN)/python -m experiments.run_all --out $(EXPERIMENTS_OUT) $(EXPERIMENTS_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache

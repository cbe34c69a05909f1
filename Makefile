# genmodels: `make demo` and `make test` do all the set-up themselves (see README.md).
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# the course notebooks, in order: every nbs/NN*.ipynb
COURSE_NBS := $(sort $(notdir $(basename $(wildcard nbs/[0-9][0-9]*.ipynb))))

.PHONY: setup demo test test-slow bench export clean-runs

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(BIN)/python setup.py settings.ini
	$(BIN)/python -m pip install --quiet --upgrade pip setuptools wheel
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

setup: $(STAMP)

export: setup
	$(BIN)/nbdev_export

test: setup
	@echo "== nbdev_export leaves no diff"
	$(BIN)/nbdev_export
	@if [ -n "$$(git status --porcelain -- genmodels)" ]; then \
	  git status --porcelain -- genmodels; git diff --stat -- genmodels; \
	  echo "genmodels/ does not match nbs/: run nbdev_export and commit"; exit 1; fi
	@echo "== nbdev_test (short runs: GENMODELS_SHORT_RUN=1, see genmodels.core.short_run)"
	@# 03_pix2pix runs whole in JupyterLab in pytest's browser test, which fails on any error output; nbdev_test
	@# runs it only where there is no chromium for that test
	@skip='^[_.]'; if command -v chromium >/dev/null; then skip='^([_.]|03_pix2pix)'; \
	  echo "(03_pix2pix: run by tests/test_browser.py in JupyterLab)"; fi; \
	GENMODELS_SHORT_RUN=1 MPLBACKEND=Agg timeout 1500 $(BIN)/nbdev_test --n_workers 2 --timing --skip_file_re "$$skip"
	@echo "== pytest"
	GENMODELS_SHORT_RUN=1 MPLBACKEND=Agg $(BIN)/python -m pytest tests/ -q -p no:cacheprovider --durations=10

test-slow: setup
	@# the training notebooks at their quick preset (make test trains them briefly), with the cells tagged `#| slow`:
	@# the equal-compute comparisons of 02c_stylegan2 and 07_flow (`make demo` runs all of this as well)
	env -u GENMODELS_SHORT_RUN MPLBACKEND=Agg $(BIN)/nbdev_test --n_workers 1 --timing --flags slow \
	  --file_re '^(02_gan|02c_|03_pix2pix|05_|07_)'

demo: setup
	@run=runs/$$(date +%Y%m%d-%H%M%S)-demo; status=0; \
	$(BIN)/genmodels run-all --preset quick --out $$run || status=$$?; \
	[ -f $$run/03_pix2pix/03_pix2pix.html ] && echo "== headline: $$run/03_pix2pix/03_pix2pix.html (Pix2Pix: metrics table and the predicted section)"; \
	exit $$status

bench: setup
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean-runs:
	rm -rf runs

# make run:  create .venv, install, export + verify every registered model into artifacts/ (trained ones from their committed checkpoints), print the parity table
# make test: create .venv if missing, install, run the test suite (all of it: what CI runs)
# make test-fast: the same without the tests marked slow (exports, ExecuTorch lowerings, Ray): for iterating
# make bench: the benchmarks (< 10 min, quiet machine): benchmarks/results.{json,md}, chart.png, the table in docs/benchmarks.md
# make bench-ray: the Ray engine, 1 and 2 workers, against the single process: benchmarks/ray_results.{json,md}
# make retrain-pos-ewt: train the EWT tagger from scratch instead of exporting its committed checkpoint
VENV    ?= .venv
PY      := $(VENV)/bin/python
PIP     := $(VENV)/bin/pip
STAMP   := $(VENV)/.seqedge-installed

.PHONY: install run test test-fast bench bench-quick bench-ray retrain-pos-ewt retrain-char-shakespeare clean

install: $(STAMP)

$(STAMP): pyproject.toml Makefile
	python3 -m venv $(VENV)
	# The CPU build of torch first and alone, so nothing after it can resolve to a CUDA build.
	$(PIP) install --quiet torch==2.13.0
	$(PIP) install --quiet -e '.[export,verify,executorch,test]'
	@if $(PIP) list 2>/dev/null | grep -qi '^nvidia-'; then echo "error: CUDA packages were installed" >&2; exit 1; fi
	touch $(STAMP)

run: install
	$(PY) -m export --all --force

# One pytest process per core, at most 4 (pytest-xdist); each test file runs whole in one of them, so its
# module fixtures (exports) are made once. pytest tests/test_x.py alone runs in one process.
PYTEST  := $(PY) -m pytest -q -n auto --maxprocesses 4 --dist loadfile

test: install
	$(PYTEST)

test-fast: install
	$(PYTEST) -m "not slow"

# Runtime vs eager torch vs TorchScript, one thread, side by side; rewrites the results table in docs/benchmarks.md.
bench: install
	$(PY) benchmarks/bench.py --docs

# About a minute, into benchmarks/quick/ (the test suite runs it too, as a smoke test; no timing is asserted).
bench-quick: install
	$(PY) benchmarks/bench.py --quick

# The Ray engine against the single-process command (2 cores: 1 and 2 workers): benchmarks/ray_results.{json,md}.
bench-ray: install
	$(PY) benchmarks/ray_bench.py

# Train pos-ewt from scratch (<= 30 min on 2 cores), update its checkpoint, re-export and verify it.
retrain-pos-ewt: install
	$(PY) -m export pos-ewt --retrain --force

# Train char-shakespeare from scratch (<= 30 min on 2 cores), update its checkpoint, re-export and verify it.
retrain-char-shakespeare: install
	$(PY) -m export char-shakespeare --retrain --force

clean:
	rm -rf $(VENV) .pytest_cache

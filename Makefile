# The README's two commands: `make demo` and `make test`.
# A local virtual environment is created on first use, so both work on a fresh machine.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m tunnel demo

# python-lzo (LZO decompression) has no wheel and builds only where liblzo2-dev is installed:
# try it, and otherwise say so (its tests are marked `lzo`: they skip with that reason).
test: $(STAMP)
	@$(PY) -c 'import lzo' 2>/dev/null || $(PY) -m pip install -q 'python-lzo>=1.15' >/dev/null 2>&1 \
		|| echo "make: python-lzo did not build (apt-get install liblzo2-dev): the LZO tests will skip"
	$(PY) -m pytest -q

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict core tunnel

bench: $(STAMP)
	$(PY) scripts/bench_core.py
	$(PY) scripts/bench_datapath.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info

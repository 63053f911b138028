# Every target sets up its own virtual environment first, so each works on a fresh machine.
PY      ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed

.PHONY: setup demo test bench report clean

$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned, so nothing resolves a newer (CUDA) build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[test]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/gclf demo

test: $(STAMP)
	$(BIN)/python -m pytest tests --benchmark-disable -q

bench: $(STAMP)
	$(BIN)/python -m pytest benchmarks --benchmark-only

# The README table: benchmarks of every step and the two peers on the run RUN (and its RUN-* step
# folders; missing ones are built in a temporary folder), then the Markdown table and the PNG.
RUN ?= runs/model
report: $(STAMP)
	mkdir -p runs/report
	GCLF_BENCH_RUN=$(RUN) $(BIN)/python -m pytest benchmarks --benchmark-only --benchmark-json runs/report/bench.json
	$(BIN)/gclf report $(RUN) --bench-json runs/report/bench.json --out runs/report

clean:
	rm -rf $(VENV) runs build .pytest_cache

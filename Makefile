# lakeseg — two commands on a fresh machine: `make demo` and `make test`.
# Everything installs into the project: .tools/ (uv) and .venv/ (the locked
# dependency set). Nothing needs an AWS account or a server.

PYTHON ?= python3
UV_VERSION := 0.13.9
TOOLS := .tools
UV := $(TOOLS)/bin/uv
VENV := .venv
BIN := $(VENV)/bin
export UV_PYTHON_DOWNLOADS := never
export UV_PROJECT_ENVIRONMENT := $(VENV)
export DBT_SEND_ANONYMOUS_USAGE_STATS := false

LAKE ?= build/lake
ENDPOINTS ?= 50000

.PHONY: install lake build sync demo test lint bench clean

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet
	@touch $@

profiles.yml:
	cp profiles.yml.example profiles.yml

install: $(VENV)/.installed profiles.yml ## install the locked dependency set

lake: install ## generate the sample data lake (ENDPOINTS=50000)
	$(BIN)/lakeseg lake generate --path $(LAKE) --endpoints $(ENDPOINTS)

demo: install ## sample lake -> dbt build on DuckDB -> sync to local files
	$(BIN)/lakeseg lake generate --path $(LAKE) --endpoints $(ENDPOINTS) --if-missing
	$(BIN)/lakeseg run

test: install ## every test: unit, end-to-end (dbt on DuckDB, sync against moto), linters
	$(BIN)/pytest

bench: install ## benchmarks (not part of the test suite)
	$(BIN)/python -m benchmarks.sync_bench

clean:
	rm -rf build target logs

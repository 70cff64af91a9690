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

CHECKOV := $(TOOLS)/checkov/bin/checkov
ACTIONLINT := $(TOOLS)/actionlint/bin/actionlint
DRT := $(TOOLS)/drt/bin/drt

.PHONY: install tools browser lake demo test docs lint bench mutation mutation-resume bundle clean report-screenshot

$(UV):
	$(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/pip install --quiet "uv==$(UV_VERSION)"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	$(UV) sync --frozen --quiet
	@touch $@

profiles.yml:
	cp profiles.yml.example profiles.yml

# checkov (CloudFormation security scan) pins libraries the project also uses,
# so it lives in a tool environment of its own, locked in tools/.
$(CHECKOV): tools/checkov-requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing $(TOOLS)/checkov
	$(UV) pip install --quiet --python $(TOOLS)/checkov/bin/python -r tools/checkov-requirements.txt
	@touch $@

# actionlint (GitHub Actions workflows, with shellcheck for run: scripts): a tool environment
# of its own too, locked in tools/ (regenerate with
# `uv pip compile --python-version 3.11 --only-binary :all: tools/actionlint.in -o tools/actionlint-requirements.txt`).
$(ACTIONLINT): tools/actionlint-requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing $(TOOLS)/actionlint
	$(UV) pip install --quiet --only-binary :all: --python $(TOOLS)/actionlint/bin/python -r tools/actionlint-requirements.txt
	@touch $@

tools: $(CHECKOV) $(ACTIONLINT) ## linters that live outside the project's environment

# drt-core, the peer `make bench` compares against: a tool environment of its
# own (pinned in tools/drt.in, locked in tools/drt-requirements.txt), never in
# the project's uv.lock.
$(DRT): tools/drt-requirements.txt | $(UV)
	$(UV) venv --quiet --allow-existing $(TOOLS)/drt
	$(UV) pip install --quiet --python $(TOOLS)/drt/bin/python -r tools/drt-requirements.txt
	@touch $@

install: $(VENV)/.installed profiles.yml ## install the locked dependency set

# Headless Chromium for the report's browser test (Debian's package; no browser
# download). Installed when missing and apt-get may run; otherwise the browser
# test skips and says which command installs it.
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ; } || \
	  echo "Chromium is missing and could not be installed here: the report's browser test will skip. Install it with: apt-get install -y chromium"

lake: install ## generate the sample data lake (ENDPOINTS=50000)
	$(BIN)/lakeseg lake generate --path $(LAKE) --endpoints $(ENDPOINTS)

demo: install ## sample lake -> dbt build on DuckDB -> sync to local files
	$(BIN)/lakeseg lake generate --path $(LAKE) --endpoints $(ENDPOINTS) --if-missing
	$(BIN)/lakeseg run

test: install tools browser ## every test: unit, end-to-end (dbt on DuckDB, sync against moto), linters
	LAKESEG_CHECKOV=$(CURDIR)/$(CHECKOV) LAKESEG_ACTIONLINT=$(CURDIR)/$(ACTIONLINT) $(BIN)/pytest -n 2

# The docs site (mkdocs.yml; docs/) into site/: strict, so a broken link or anchor, or a page
# missing from the nav, fails (tests/test_docs.py builds it in `make test` too).
docs: install ## the docs site into site/
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# Mutation testing of the modules that carry the sync's guarantees (see
# [tool.mutmut] in pyproject.toml): mutmut mutates them one change at a time and
# runs the tests that reach each change. Not part of `make test` (it takes far
# longer); prints the kill rate per module and every survivor.
# Mutants' tests write their temp files (DuckDB files, snapshots, fsync'd state) to RAM when the
# machine has /dev/shm: measured 40% faster per test than on disk.
MUTATION_TMP ?= $(if $(wildcard /dev/shm),/dev/shm/lakeseg-mutation,$(CURDIR)/build/mutation-tmp)

# Two passes: the first generates every mutant, records which tests reach which function and runs
# the guard's few mutants; the second runs the rest except those listed in
# tools/mutation-equivalents.txt whose mutated line still matches (each was seen to survive when it
# was listed, and a survivor costs every test that reaches its function). MUTATION_EQUIVALENTS=run
# runs those too.
MUTATION_EQUIVALENTS ?= skip
MUTMUT = PATH=$(CURDIR)/$(BIN):$$PATH TMPDIR=$(MUTATION_TMP) $(BIN)/mutmut run --max-children 2

mutation: install ## mutation testing: kill rate per module, survivors (tools/mutation-equivalents.txt)
	rm -rf mutants $(MUTATION_TMP) && mkdir -p build $(MUTATION_TMP)
	{ $(MUTMUT) "sync.run.guard*" && \
	  if [ "$(MUTATION_EQUIVALENTS)" = run ]; then $(MUTMUT); else \
	    names=$$($(BIN)/python tools/mutation_report.py --to-run) && \
	    if [ -n "$$names" ]; then $(MUTMUT) $$names; fi; fi; } > build/mutation.log 2>&1 \
		|| { rm -rf $(MUTATION_TMP); tail -n 40 build/mutation.log; exit 1; }
	rm -rf $(MUTATION_TMP)
	$(BIN)/python tools/mutation_report.py

mutation-resume: install ## go on with an interrupted `make mutation` where it stopped (mutants/ kept; each result is saved as it comes)
	mkdir -p build $(MUTATION_TMP)
	{ names=$$($(BIN)/python tools/mutation_report.py --to-run) && \
	  if [ -n "$$names" ]; then $(MUTMUT) $$names; fi; } >> build/mutation.log 2>&1 \
		|| { rm -rf $(MUTATION_TMP); tail -n 40 build/mutation.log; exit 1; }
	rm -rf $(MUTATION_TMP)
	$(BIN)/python tools/mutation_report.py

report-screenshot: install browser ## docs/report.png, docs/report-390.png: the top of the report at 1200 and 390 px
	$(BIN)/python -m tools.report_screenshot build/report/sample.html docs/report.png --sample --width 1200 --top 1000
	$(BIN)/python -m tools.report_screenshot build/report/sample.html docs/report-390.png --width 390 --top 1500

BENCH_ROWS ?= 10000000
PIPELINE_ENDPOINTS ?= 1000000 10000000
# The scale table (benchmarks/scale_bench.py): measured at these sizes, fitted per row, extrapolated to 100M and 1B.
SCALE_SIZES ?= 1000000 2000000 10000000

bench: install $(DRT) ## benchmarks (not part of the test suite): BENCH_ROWS=1000000 for a quick look
	$(BIN)/python -m benchmarks.sync_bench --rows $(BENCH_ROWS)
	$(BIN)/lakeseg lake generate --path $(LAKE) --endpoints $(ENDPOINTS) --if-missing
	$(BIN)/python -m benchmarks.partitions --lake $(LAKE)
	$(BIN)/python -m benchmarks.pipeline_bench --endpoints $(PIPELINE_ENDPOINTS)
	$(BIN)/python -m benchmarks.scale_bench --sizes $(SCALE_SIZES)

bundle: ## the scheduled runner's project bundle (build/lakeseg-bundle.zip) from the committed HEAD
	mkdir -p build
	git archive --format=zip --output=build/lakeseg-bundle.zip HEAD
	@echo "upload: aws s3 cp build/lakeseg-bundle.zip s3://<BucketName>/<BundleKey>  (the bucket keeps each version)"

clean:
	rm -rf build target logs

lint: install ## ruff (lint, format check) and mypy; also part of `make test`
	$(BIN)/ruff check sync tests benchmarks tools infra
	$(BIN)/ruff format --check sync tests benchmarks tools infra
	$(BIN)/mypy

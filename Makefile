# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test migrate demo lint messages bench bench-quick bench-scale bench-flash bench-reprice bench-catalog contract soak-money clean

$(STAMP): requirements.txt requirements-dev.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

install: $(STAMP)

.env:
	cp .env.example .env
	@echo "Created .env from .env.example (development settings)."

migrate: install .env
	$(BIN)/python manage.py migrate --noinput

demo: migrate
	$(BIN)/python manage.py load_demo_data

# Web (127.0.0.1:8000) + Celery worker with embedded scheduler, until Ctrl-C.
run: demo
	@bash scripts/run-dev.sh

test: install
	$(BIN)/pytest $(PYTEST_ARGS)

# The translations: collect every string of ours into locale/*/django.po, then compile the .mo files
# (both committed). Needs GNU gettext (apt-get install gettext); tests/test_locale.py checks the result.
messages: install .env
	$(BIN)/python manage.py makemessages -l ru -l en --no-obsolete --ignore='.venv/*' --ignore='tests/*' \
		--ignore='bench/*' --ignore='var/*' --ignore='docs/*' --ignore='*/migrations/*'
	$(BIN)/python manage.py compilemessages --ignore='.venv/*'

# Style, then the doors between the packages: the layers in .importlinter, no import cycle and no
# private name crossing a package (docs/architecture.md).
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache
	$(BIN)/python scripts/check_architecture.py

# BENCH_ARGS: more options (`bench/run.py --help`); `BENCH_ARGS=--tiny` is CI's few-second run of each.
bench: install
	$(BIN)/python bench/run.py $(BENCH_ARGS)

bench-quick: install
	$(BIN)/python bench/run.py --quick $(BENCH_ARGS)

# A million orders in a throwaway PostgreSQL database: the admin, the sweep and the webhook on it.
bench-scale: install
	$(BIN)/python bench/scale.py $(BENCH_ARGS)

# A flash sale against a fast and a slow fake bank: orders/s, and the webhook and catalogue meanwhile.
bench-flash: install
	$(BIN)/python bench/flash.py $(BENCH_ARGS)

# Repricing the catalogue (10,000 products) against a bare bulk update of the same rows, on a
# throwaway SQLite file (BENCH_ARGS=--database-url postgres://.../name for PostgreSQL).
bench-reprice: install
	$(BIN)/python bench/reprice.py $(BENCH_ARGS)

# The storefront's catalogue API on 10,000 products against an order-status lookup, in-process.
bench-catalog: install
	$(BIN)/python bench/catalogue.py $(BENCH_ARGS)

# The money model (tests/orders/test_money_model.py) at random for a long time: batches of
# MONEY_SOAK_EXAMPLES runs of up to MONEY_SOAK_STEPS steps until MONEY_SOAK_SECONDS have passed,
# with progress every 30 s; set DATABASE_URL to run it on PostgreSQL.
MONEY_SOAK_SECONDS ?= 1200
soak-money: install
	MONEY_SOAK=1 MONEY_SOAK_PROGRESS=1 MONEY_SOAK_SECONDS=$(MONEY_SOAK_SECONDS) \
		$(BIN)/pytest -q -s -p no:cacheprovider -p no:logging tests/orders/test_money_model.py

clean:
	rm -rf var/ .pytest_cache

# Schemathesis against a server started for the run: is the API what /api/schema/ says?
contract: install
	$(BIN)/python scripts/contract.py $(CONTRACT_ARGS)

# Two commands do everything on a fresh machine: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install run test migrate demo lint bench bench-quick bench-scale soak-money clean

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

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: install
	$(BIN)/python bench/run.py

bench-quick: install
	$(BIN)/python bench/run.py --quick

# A million orders in a throwaway PostgreSQL database: the admin, the sweep and the webhook on it.
bench-scale: install
	$(BIN)/python bench/scale.py $(BENCH_ARGS)

# The money model (tests/orders/test_money_model.py) at random for a long time: batches of
# MONEY_SOAK_EXAMPLES runs of up to MONEY_SOAK_STEPS steps until MONEY_SOAK_SECONDS have passed,
# with progress every 30 s; set DATABASE_URL to run it on PostgreSQL.
MONEY_SOAK_SECONDS ?= 1200
soak-money: install
	MONEY_SOAK=1 MONEY_SOAK_PROGRESS=1 MONEY_SOAK_SECONDS=$(MONEY_SOAK_SECONDS) \
		$(BIN)/pytest -q -s -p no:cacheprovider -p no:logging tests/orders/test_money_model.py

clean:
	rm -rf var/ .pytest_cache

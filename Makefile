# One command to run the service, one to run the tests (see README.md).
export RASA_TELEMETRY_ENABLED := false
export TF_CPP_MIN_LOG_LEVEL := 2
VENV := .venv/bin

.PHONY: install run train test lint audit lock bench clean

install:
	@scripts/bootstrap.sh

run: install
	$(VENV)/bot run

train: install
	$(VENV)/bot train

lint: install
	$(VENV)/ruff check .

# pip-audit over requirements/lock.txt (docs/dependency-audit.md).
audit: install
	@scripts/audit.sh

# Re-resolve requirements/*.txt after a change to pyproject.toml or requirements/*.in.
lock:
	@scripts/lock.sh

test: install lint
	@scripts/ensure-chromium.sh
	$(VENV)/python -m pytest

bench: install
	$(VENV)/python bench/latency.py

clean:
	rm -rf models var .pytest_cache

# `make run` and `make test` each do all of their own set-up on a fresh machine.
VENV    ?= .venv
PYTHON  ?= python3
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed
# Debian packages providing the real peers the tests talk to.
PEER_PACKAGES = dcmtk dicom3tools xorriso orthanc
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint peers bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(STAMP)
	$(BIN)/dicombox serve $(ARGS)

peers:
	@if ! command -v storescu >/dev/null || ! command -v dciodvfy >/dev/null || ! command -v xorriso >/dev/null || [ ! -x /usr/sbin/Orthanc ]; then \
		echo "installing peers: $(PEER_PACKAGES)"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $(PEER_PACKAGES); \
	fi

test: $(STAMP) peers
	$(BIN)/ruff check core hal plugins tests bench
	$(BIN)/pytest $(PYTEST_ARGS)

lint: $(STAMP)
	$(BIN)/ruff check core hal plugins tests bench
	$(BIN)/ruff format --check core hal plugins tests bench

bench: $(STAMP) peers
	$(BIN)/python -m bench.ingest $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info

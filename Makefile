# `make run` and `make test` each do all of their own set-up on a fresh machine.
VENV    ?= .venv
PYTHON  ?= python3
BIN      = $(VENV)/bin
STAMP    = $(VENV)/.installed
# Debian packages providing the real peers the tests talk to.
PEER_PACKAGES = dcmtk dicom3tools xorriso orthanc chromium
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint peers bench docs clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(STAMP)
	$(BIN)/dicombox serve $(ARGS)

peers:
	@if ! command -v storescu >/dev/null || ! command -v dciodvfy >/dev/null || ! command -v xorriso >/dev/null || [ ! -x /usr/sbin/Orthanc ] || ! command -v chromium >/dev/null; then \
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

# docs/configuration.md and docs/conformance.md, generated from the code (tests/test_docs.py
# fails while the committed ones are stale).
docs: $(STAMP)
	$(BIN)/dicombox docs --write docs

clean:
	rm -rf $(VENV) build *.egg-info image/build

# The appliance image (image/README.md): a separate step, never part of `make test`.
# Building needs root (debootstrap, chroot, file ownership) and the Debian archive.
.PHONY: image image-test
image: $(STAMP)
	@if ! command -v debootstrap >/dev/null || ! command -v sfdisk >/dev/null || ! command -v mkfs.fat >/dev/null || ! command -v mcopy >/dev/null || ! command -v syslinux >/dev/null || [ ! -f /usr/lib/syslinux/mbr/gptmbr.bin ]; then \
		echo "installing image tools: debootstrap fdisk dosfstools mtools syslinux"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends debootstrap debian-archive-keyring fdisk dosfstools mtools e2fsprogs syslinux syslinux-common; \
	fi
	$(SUDO) env PYTHON=$(abspath $(BIN))/python image/build.sh

# Boots image/build/dicombox.img (building it first when there is none) under QEMU and
# C-ECHOes the box; ARGS go to image/boot_test.py (e.g. ARGS="--firmware bios").
image-test: $(STAMP)
	@if ! command -v qemu-system-x86_64 >/dev/null || ! command -v qemu-img >/dev/null || [ ! -f /usr/share/OVMF/OVMF_CODE_4M.fd ]; then \
		echo "installing QEMU: qemu-system-x86 qemu-utils ovmf"; \
		$(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends qemu-system-x86 qemu-utils ovmf; \
	fi
	@[ -f image/build/dicombox.img ] || $(MAKE) image
	$(BIN)/python image/boot_test.py $(ARGS)

# Two commands set up everything on a fresh Debian/Ubuntu machine with Python 3.11:
#   make demo   venv + install + the appliance with its built-in sample library
#   make test   venv + test dependencies (Debian packages too, when missing) + the suite
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
PORT   ?= 8080
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: demo test dist system-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test,dist]'
	rm -f $(VENV)/.installed-*
	touch $@

demo: $(STAMP)
	$(BIN)/shuqiao demo --port $(PORT)

system-deps:
	sh tests/system-deps.sh

# The suite also checks the one-file binary that ships, so it is built first (~25 s).
test: $(STAMP) system-deps dist
	$(BIN)/python -m pytest $(PYTEST_ARGS)

dist: $(STAMP)
	$(BIN)/python packaging/build.py

clean:
	rm -rf build dist $(VENV) .pytest_cache

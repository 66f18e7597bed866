# Every target installs what it needs into .venv first.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
PROTO_INCLUDE = $$($(BIN)/python -c 'import os, google.api; print(os.path.dirname(os.path.dirname(google.api.__path__[0])))')

.PHONY: install run test lint proto bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[dev]'
	@touch $(STAMP)

proto: $(STAMP)
	$(BIN)/python -m grpc_tools.protoc -I protos -I $(PROTO_INCLUDE) \
		--python_out=protos --pyi_out=protos --grpc_python_out=protos \
		protos/usersecrets/v1/usersecrets.proto protos/usersecrets/v1/relay.proto

run: $(STAMP)
	$(BIN)/python -m usersecrets.sdk.devrun

test: $(STAMP)
	$(BIN)/python -m pytest

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

BENCH_STAMP := $(VENV)/.installed-bench-stamp

$(BENCH_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -e '.[dev,bench]'
	@touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m bench.run $(if $(QUICK),--quick,)

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache

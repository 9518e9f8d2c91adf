# Two entry points: `make demo` and `make test`. Each creates .venv and installs what it needs
# (once; later runs only check a stamp). TORCH sets the torch requirement: the default pins the
# CPU wheel that lies on this team's machines; GPU users pass e.g. TORCH='torch>=2.1'.
PYTHON ?= python3
TORCH ?= torch==2.13.0
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell echo '$(TORCH)' | tr -c 'a-zA-Z0-9.\n' '_')
DEMO := build/demo
PIP := $(BIN)/python -m pip install -q --disable-pip-version-check
SHELL := /bin/bash
.SHELLFLAGS := -o pipefail -c
# this machine's pip config names find-links folders that may be absent: drop that noise only
QUIET := 2>&1 | { grep -v "^WARNING: Location '.*' is ignored" || true; }

.PHONY: setup demo test bench clean

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) '$(TORCH)' $(QUIET)
	$(PIP) -e '.[test,eval]' $(QUIET)
	# reference codecs for the equivalence tests; with their dependencies they would pull a
	# torch or torchaudio that breaks this torch (the tests stand in for the few imports they need)
	$(PIP) --no-deps encodec==0.1.1 descript-audio-codec==1.0.0 snac==1.2.1 moshi==0.2.13 transformers==5.23.0 \
		huggingface-hub==2.4.0 httpx2==2.16.2 httpcore2==2.16.2 anyio==4.16.0 h11==0.16.0 truststore==0.10.5 \
		tokenizers==0.23.3 regex==2026.11.15 sentencepiece==0.2.3 $(QUIET)
	# torchaudio for XCodec2's/NeuCodec's feature extractors, which call its kaldi fbank (pure Python):
	# PyPI has no build for a CPU torch, and the native library of its Linux wheels needs CUDA torch.
	# torchaudio imports as pure Python when its lib/ holds no library (torchaudio/_extension/utils.py
	# _load_lib), so where that library cannot load here it is removed: only native ops that rvqtool
	# never calls (forced_align, rnnt_loss, ...) are then missing. A torch it loads with keeps it.
	$(PIP) --no-deps torchaudio==2.11.0 $(QUIET)
	$(BIN)/python -c 'import torchaudio' 2>/dev/null || \
		rm "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')"/torchaudio/lib/*.so
	$(BIN)/python -c 'import torchaudio.compliance.kaldi'
	rm -f $(VENV)/.installed-*
	touch $@

setup: $(STAMP)

demo: $(STAMP)
	@mkdir -p $(DEMO)
	$(BIN)/rvq info default
	$(BIN)/rvq encode examples/audio/demo_speech.flac -o $(DEMO)/demo_speech.npy
	$(BIN)/rvq info $(DEMO)/demo_speech.npy
	$(BIN)/rvq decode $(DEMO)/demo_speech.npy -o $(DEMO)/demo_speech_decoded.wav
	$(BIN)/python examples/compare.py examples/audio/demo_speech.flac $(DEMO)/demo_speech_decoded.wav $(DEMO)/demo_speech.npy

test: $(STAMP)
	$(BIN)/python -m pytest

bench: $(STAMP)
	$(PIP) -e '.[bench]' $(QUIET)
	$(BIN)/python benchmarks/kernels.py
	$(BIN)/python benchmarks/encode_speed.py
	$(BIN)/python benchmarks/long_file_memory.py
	$(BIN)/python benchmarks/tokenize_speed.py
	$(BIN)/python benchmarks/reference_codecs.py
	$(BIN)/python benchmarks/kmeans.py

clean:
	rm -rf build $(VENV)

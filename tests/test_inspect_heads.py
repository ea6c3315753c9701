"""`edgeagent inspect --write-pipeline` for heads no shipped model has (YOLOv5, SSD with
post-processing), made as small ONNX graphs of the right output shapes; unknown heads; --json."""

import os

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_config(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("device: {id: inspect-test}\nstate_dir: %s\n" % (tmp_path / "state"))
    return str(path)


def constant_model(path, image_shape, outputs, layout_names=None):
    """An ONNX model whose outputs are constants of the given shapes (its image input unused):
    enough for inspect's shape reading, its guess and the written pipeline's decoder build."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    rng = np.random.RandomState(0)
    nodes, infos = [], []
    for i, shape in enumerate(outputs):
        name = (layout_names or {}).get(i, "out%d" % i)
        value = rng.uniform(0, 1, shape).astype(np.float32)
        nodes.append(helper.make_node("Constant", [], [name],
                                      value=numpy_helper.from_array(value, name + "_value")))
        infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(shape)))
    graph = helper.make_graph(nodes, "constant", [helper.make_tensor_value_info(
        "images", TensorProto.FLOAT, list(image_shape))], infos)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 7
    onnx.save(model, str(path))
    return str(path)


@pytest.mark.parametrize("outputs, image, decoder", [
    ([(1, 6300, 7)], (1, 3, 320, 320), "yolov5"),
    ([(1, 10, 4), (1, 10), (1, 10), (1,)], (1, 300, 300, 3), "ssd"),
])
def test_written_pipelines_for_other_heads_pass_validate(run_agent, tmp_path, outputs, image,
                                                        decoder):
    path = constant_model(tmp_path / ("%s.onnx" % decoder), image, outputs)
    pipeline = str(tmp_path / "p.yaml")
    done = run_agent(["inspect", path, "--write-pipeline", pipeline])
    assert done.returncode == 0, done.stderr
    assert "type: %s" % decoder in open(pipeline).read()
    checked = run_agent(["validate", "--config", write_config(tmp_path), "--pipeline", pipeline])
    assert checked.returncode == 0, checked.stderr


def test_unknown_heads_write_nothing_and_say_why(run_agent, tmp_path):
    path = constant_model(tmp_path / "nms.onnx", (1, 3, 640, 640), [(1, 300, 6)])
    out = tmp_path / "p.yaml"
    done = run_agent(["inspect", path, "--write-pipeline", str(out)])
    assert done.returncode == 3 and not out.exists()
    assert "guess     none: outputs out0 [1, 300, 6] fit none of the decoders" in done.stdout
    assert done.stderr_lines() == ["edgeagent inspect: model error: %s: no pipeline written: "
                                   "outputs out0 [1, 300, 6] fit none of the decoders (classify, "
                                   "yolov5, yolov8, ssd, blazeface); export the raw head without "
                                   "NMS, or see docs/models.md" % path]


def test_json_output(run_agent, fetched_models):
    import json
    done = run_agent(["inspect", os.path.join(ROOT, "models", "yolov8n_nudenet_320.onnx"), "--json"])
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["opset"] == 17 and report["ir_version"] == 10
    assert report["inputs"][0]["dynamic_axes"] == {"0": "batch", "2": "height", "3": "width"}
    assert report["guess"]["decoder"] == "yolov8" and report["guess"]["num_classes"] == 18
    assert report["guess"]["input_size"] == [320, 320]


def test_a_model_too_new_for_the_runtime_says_its_ir_and_opset(run_agent, tmp_path):
    import onnx
    path = constant_model(tmp_path / "new.onnx", (1, 3, 32, 32), [(1, 10)])
    model = onnx.load(path)
    model.ir_version = 99          # what a future exporter might write
    onnx.save(model, path)
    done = run_agent(["inspect", path])
    assert done.returncode == 3
    (line,) = done.stderr_lines()
    assert "cannot load it (model IR 99, opset 13)" in line
    assert "docs/models.md lists the opset each runtime reads" in line

"""`edgeagent bench` on the interpreter under test (the Python 3.8 device suite runs this too;
tests/test_bench.py checks the installed wheel on the workstation)."""

import json


def test_bench_measures_the_face_detector_here(run_agent):
    done = run_agent(["bench", "--frames", "3", "--warmup", "1", "--json"], timeout_s=180)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)["rows"]
    assert {r["backend"] for r in rows} >= {"onnxruntime", "tflite"}
    assert all(r["inference_ms"] > 0 and r["e2e_ms"] > 0 and r["rss_mb"] > 0 for r in rows)


def test_bench_bad_arguments_get_one_line(run_agent, tmp_path):
    done = run_agent(["bench", "--frames", "0"])
    assert done.returncode == 2
    assert done.stderr_lines() == ["edgeagent bench: config error: --frames must be >= 1 and "
                                   "--warmup >= 0"]
    empty = tmp_path / "empty"
    empty.mkdir()
    done = run_agent(["bench", "--images", str(empty)])
    assert done.returncode == 2 and "no jpg/png/bmp files" in done.stderr


def test_bench_rows_per_tensorrt_precision_through_the_fake(fake, tmp_path, capsys):
    # the fake TensorRT (tests/fakes) builds and runs engines: its timings mean nothing, the
    # rows and labels do - one per precision, on the GPU, the engine built into --cache-dir
    import os
    from agent.cli import main
    trt, _ = fake
    code = main(["bench", "--backends", "tensorrt", "--frames", "2", "--warmup", "0",
                 "--cache-dir", str(tmp_path), "--json"])
    assert code == 0
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert [(r["backend"], r["precision"], r["device"]) for r in rows] == [
        ("tensorrt", "fp16", "gpu"), ("tensorrt", "fp32", "gpu")]
    assert trt._fake["builds"] == 2
    assert sorted(n.split("-")[-2] for n in os.listdir(str(tmp_path)) if n.endswith(".engine")) \
        == ["fp16", "fp32"]

"""`run --print` / `--print-all` on an images:// source: every payload names its picture; with
--print-all the frames without results are printed too, marked unpublished (no seq)."""

import json


def run_photos(run_agent, tmp_path, images_dir, flag):
    done = run_agent(["run", "--pipeline", "face-detect", "--backend", "onnxruntime",
                      "--source", "images://" + images_dir, "--no-mqtt", flag,
                      "--state-dir", str(tmp_path / "state"), "--log-level", "warning"])
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def test_print_shows_frames_with_results_and_names_the_file(run_agent, tmp_path,
                                                            sample_images_dir, schema_validator):
    lines = run_photos(run_agent, tmp_path, sample_images_dir, "--print")
    payloads = [schema_validator.validate("result", line.encode()) for line in lines]
    assert [(p["frame"]["file"], len(p["detections"])) for p in payloads] == [("astronaut.jpg", 1)]


def test_print_all_adds_the_frames_without_results(run_agent, tmp_path, sample_images_dir,
                                                   schema_validator):
    payloads = [json.loads(line) for line in
                run_photos(run_agent, tmp_path, sample_images_dir, "--print-all")]
    assert [(p["frame"]["index"], p["frame"]["file"], len(p["detections"])) for p in payloads] == [
        (0, "astronaut.jpg", 1), (1, "chelsea.jpg", 0), (2, "coffee.jpg", 0)]
    published, empty = payloads[0], payloads[1:]
    schema_validator.validate("result", json.dumps(published).encode())
    assert "published" not in published and published["seq"] == 1
    assert all(p["published"] is False and "seq" not in p for p in empty)

"""SIGHUP (systemctl reload) against the real agent process, a real broker and a real ffmpeg
camera: a broken config keeps the running pipeline, a pipeline whose model does not load falls
back to the running one, a good change swaps the pipeline in place. Through all of it: the same
process, RELOADING=1 then READY=1 each time, and every result's seq at the broker, none lost."""

import os
import signal

from agent_proc import AgentProcess, NotifySocket, mqtt_section, write_config
from broker import Subscriber, dedupe
from conftest import ROOT
from streams import FfmpegStream

FACE_PIPELINE = os.path.join(ROOT, "pipelines", "face-detect.yaml")


def corrupt_model_pipeline(tmp_path) -> str:
    """face-detect's YAML, renamed, with a model file that is not a model."""
    model = tmp_path / "corrupt.onnx"
    model.write_bytes(b"this is not an onnx model\n" * 10)
    with open(FACE_PIPELINE) as handle:
        text = handle.read()
    text = text.replace("name: face-detect", "name: face-corrupt")
    for line in [l for l in text.splitlines() if l.strip().startswith(("tflite:", "onnxruntime:",
                                                                        "tensorrt:"))]:
        key = line.split(":")[0]
        text = text.replace(line, "%s: %s" % (key, model))
    path = tmp_path / "face-corrupt.yaml"
    path.write_text(text)
    return str(path)


def test_sighup_swaps_the_pipeline_in_place_without_losing_a_result(
        tmp_path, broker, sample_video, fetched_models):
    subscriber = Subscriber(broker.port, "edgeagent/rl1/#", client_id="reload-sub")
    config_path = str(tmp_path / "config.yaml")

    def configure(pipeline):
        write_config(config_path, device={"id": "rl1"}, pipeline=pipeline,
                     source=camera.url + "?open_timeout_ms=2000&read_timeout_ms=4000",
                     state_dir=str(tmp_path / "state"), mqtt=mqtt_section(broker.port))

    def reload_and_wait_ready(agent, notify):
        sent = agent.send(signal.SIGHUP)
        assert notify.wait_for("RELOADING", after=sent, timeout_s=10) is not None
        ready = notify.wait_for("READY", after=sent, timeout_s=30)
        assert ready is not None, agent.log_text()[-3000:]
        return ready

    def results_of(agent, pipeline, after, count=5):
        return agent.wait_result(20, after=after, where=lambda p: p["pipeline"] == pipeline
                                 and len([r for r in agent.results_after(after)
                                          if r["pipeline"] == pipeline]) >= count)

    with FfmpegStream(input_path=sample_video) as camera, NotifySocket() as notify:
        configure("face-detect")
        with AgentProcess(config_path, notify=notify) as agent:
            # given the agent publishes face-detect results
            assert notify.wait_for("READY", timeout_s=30) is not None, agent.log_text()
            assert results_of(agent, "face-detect", 0.0)
            # when the config is broken and reloaded: the running pipeline stays
            with open(config_path, "a") as handle:
                handle.write("pipline: typo\n")
            ready = reload_and_wait_ready(agent, notify)
            assert agent.log_times(r"reload failed, keeping face-detect running: config error")
            assert results_of(agent, "face-detect", ready)
            # when the new pipeline's model cannot load: back to the running one
            configure(corrupt_model_pipeline(tmp_path))
            ready = reload_and_wait_ready(agent, notify)
            assert agent.log_times(r"reload: face-corrupt does not start \(model error")
            assert results_of(agent, "face-detect", ready)
            # when the pipeline is changed for real: the new one runs
            configure("classify-imagenet")
            ready = reload_and_wait_ready(agent, notify)
            assert results_of(agent, "classify-imagenet", ready, count=10)
            # then the same process ran it all and stops cleanly
            assert agent.running
            code, _ = agent.stop()
    assert code == 0, agent.log_text()[-3000:]
    assert len(agent.log_times(r"INFO agent.daemon.service: edgeagent .* on ")) == 1
    printed = agent.seqs()
    pipelines = [payload["pipeline"] for _, payload in agent.results]
    switch = pipelines.index("classify-imagenet")
    assert set(pipelines[:switch]) == {"face-detect"}
    assert set(pipelines[switch:]) == {"classify-imagenet"}
    # every seq the agent stored, 1..N without a gap, reached the broker
    assert printed == list(range(1, len(printed) + 1))
    assert subscriber.wait_for(lambda msgs: dedupe([m.json()["seq"] for m in msgs
                                                    if m.topic.endswith("/results")]) == printed,
                               timeout_s=5), "broker: %d of %d" % (
        len(dedupe(subscriber.seqs())), len(printed))
    states = [m.json()["state"] for m in subscriber.received("/status")]
    assert "offline" not in states and states[-1] == "stopped"
    assert notify.values("STATUS")[-1].startswith("stopping")
    subscriber.close()
    print("%d results: %d face-detect, then %d classify-imagenet; seq 1..%d at the broker" % (
        len(printed), switch, len(printed) - switch, len(printed)))

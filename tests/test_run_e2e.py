"""`edgeagent run` end to end: the sample video through the face-detect pipeline to a real
Mosquitto on a free port, checked by what a real subscriber receives. Every message received
is validated against agent/schemas/*.json."""

import datetime
import os
import signal
import time

import pytest

from broker import Subscriber

DEVICE = "e2e-cam"
TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def write_config(tmp_path, port, state_dir=None, loop=False, name="config.yaml"):
    path = tmp_path / name
    path.write_text("\n".join([
        "device: {id: %s}" % DEVICE,
        "pipeline: face-detect",
        "backend: onnxruntime",
        "state_dir: %s" % (state_dir or tmp_path / "state"),
        "mqtt: {host: 127.0.0.1, port: %d, keepalive_s: 5}" % port,
        "health: {interval_s: 0.5}",
        "camera: {loop: %s}" % ("true" if loop else "false"),
        "log: {level: info}",
    ]) + "\n")
    return str(path)


def utc_seconds(ts):
    moment = datetime.datetime.strptime(ts, TS_FORMAT)
    return moment.replace(tzinfo=datetime.timezone.utc).timestamp()


def validate_all(schema_validator, messages):
    """Every message against the schema of its topic (snapshots: a JPEG); the JSON payloads."""
    payloads = []
    for message in messages:
        name = schema_validator.schema_for_topic(message.topic)
        if name is None:
            assert message.payload[:2] == b"\xff\xd8", message.topic
            continue
        payloads.append(schema_validator.validate(name, message.payload))
    return payloads


def expected_face_box(sample_media, index):
    """Where the astronaut's face is in frame `index` of the sample video: the photo's face
    centre moved through the frame's crop window and scale (the video is a pan/zoom)."""
    x, y, w, h = sample_media.crop_window(index, 60, (512, 512))
    scale = sample_media.VIDEO_SIZE[0] / float(w)
    face_x, face_y = sample_media.ASTRONAUT_FACE_XY
    return (face_x - x) * scale, (face_y - y) * scale, scale


def states(messages):
    return [m.json()["state"] for m in messages]


@pytest.fixture
def subscriber(broker):
    sub = Subscriber(broker.port, "edgeagent/%s/#" % DEVICE, client_id="e2e-dashboard",
                     persistent=False)
    yield sub
    sub.close()


def test_run_on_sample_video_publishes_contract_payloads_to_a_real_subscriber(
        tmp_path, broker, subscriber, sample_video, sample_media, schema_validator, run_agent):
    # given a subscriber on the device's topics and a config pointing at the test broker
    config = write_config(tmp_path, broker.port)
    # when the agent runs the 60-frame sample video to its end, also printing each result
    started = time.time()
    run = run_agent(["run", "--config", config, "--source", "file://" + sample_video, "--print"])
    ended = time.time()
    assert run.returncode == 0, run.stderr
    assert subscriber.wait_for(lambda msgs: any(
        m.topic.endswith("/status") and m.json()["state"] == "stopped" for m in msgs))
    assert subscriber.wait_for(lambda msgs: len([m for m in msgs if m.topic.endswith("/results")]) >= 60)
    # then every message fits its schema
    messages = subscriber.received()
    validate_all(schema_validator, messages)
    results = [m.json() for m in subscriber.received("/results")]
    # and one result per frame (the face is in every frame), in frame order, seq strictly rising
    assert [r["frame"]["index"] for r in results] == list(range(60))
    seqs = [r["seq"] for r in results]
    assert all(b > a for a, b in zip(seqs, seqs[1:])), seqs
    # and the fields of the contract
    for r in results:
        assert (r["device_id"], r["pipeline"], r["backend"]) == (DEVICE, "face-detect", "onnxruntime")
        assert r["model"] == "face_detection_short_range"
        assert (r["frame"]["width"], r["frame"]["height"]) == (640, 480)
        assert started - 0.001 <= utc_seconds(r["ts"]) <= ended
        assert r["timing_ms"]["total"] == pytest.approx(
            r["timing_ms"]["preprocess"] + r["timing_ms"]["infer"] + r["timing_ms"]["postprocess"],
            abs=0.02)
    stamps = [utc_seconds(r["ts"]) for r in results]
    assert stamps == sorted(stamps)
    # and one face per frame, boxed around the astronaut's face in source-frame pixels
    for r in results:
        assert len(r["detections"]) == 1 and r["detections"][0]["label"] == "face"
        x1, y1, x2, y2 = r["detections"][0]["box"]
        face_x, face_y, scale = expected_face_box(sample_media, r["frame"]["index"])
        assert abs((x1 + x2) / 2 - face_x) < 10 and abs((y1 + y2) / 2 - face_y) < 10, r
        assert 80 * scale < x2 - x1 < 110 * scale and 80 * scale < y2 - y1 < 110 * scale, r
        assert r["detections"][0]["score"] > 0.8
    # and --print wrote the very payloads MQTT carried, one JSON line each
    printed = run.stdout.splitlines()
    assert printed == [m.payload.decode("utf-8") for m in subscriber.received("/results")]
    # and the status went online ... stopped, never offline
    status = subscriber.received("/status")
    assert states(status)[0] == "online" and states(status)[-1] == "stopped"
    assert "offline" not in states(status)
    assert status[-1].json()["backend"] == "onnxruntime"


def retained_status(broker, schema_validator=None):
    """(state, backend) of the retained status a subscriber connecting now receives."""
    late = Subscriber(broker.port, "edgeagent/%s/status" % DEVICE, client_id="late",
                      persistent=False)
    try:
        assert late.wait_for(lambda msgs: len(msgs) >= 1, timeout_s=15)
        message = late.received()[0]
    finally:
        late.close()
    assert message.retain
    payload = message.json() if schema_validator is None else schema_validator.validate(
        "status", message.payload)
    return payload["state"], payload["backend"]


def test_stopped_status_is_retained_for_a_late_subscriber(tmp_path, broker, sample_video,
                                                          schema_validator, run_agent):
    config = write_config(tmp_path, broker.port)
    run = run_agent(["run", "--config", config, "--source", "file://" + sample_video,
                     "--max-frames", "3"])
    assert run.returncode == 0, run.stderr
    assert retained_status(broker, schema_validator) == ("stopped", "onnxruntime")


def test_seq_keeps_rising_across_restarts_with_the_same_state_dir(
        tmp_path, broker, subscriber, sample_video, schema_validator, run_agent):
    # given one run of 10 frames and a second of 5, sharing the state directory (the outbox)
    config = write_config(tmp_path, broker.port)
    for frames in ("10", "5"):
        run = run_agent(["run", "--config", config, "--source", "file://" + sample_video,
                         "--max-frames", frames])
        assert run.returncode == 0, run.stderr
    assert subscriber.wait_for(lambda msgs: len([m for m in msgs if m.topic.endswith("/results")]) >= 15)
    # then the second run's seqs continue where the first stopped, while frame.index restarts
    results = validate_all(schema_validator, subscriber.received("/results"))
    seqs = [r["seq"] for r in results]
    assert all(b > a for a, b in zip(seqs, seqs[1:])), seqs
    assert [r["frame"]["index"] for r in results] == list(range(10)) + list(range(5))


def test_print_without_mqtt_writes_one_schema_valid_json_line_per_result(
        tmp_path, sample_video, schema_validator, run_agent):
    run = run_agent(["run", "--no-mqtt", "--print", "--backend", "tflite", "--source",
                     "file://" + sample_video, "--state-dir", str(tmp_path / "state"),
                     "--max-frames", "12"])
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert len(lines) == 12
    payloads = [schema_validator.validate("result", line) for line in lines]
    assert [p["seq"] for p in payloads] == list(range(1, 13))
    assert [p["frame"]["index"] for p in payloads] == list(range(12))
    assert {p["backend"] for p in payloads} == {"tflite"}


def test_sigkilled_agent_leaves_the_offline_will_and_health_fits_the_schema(
        tmp_path, broker, subscriber, sample_video, schema_validator, start_agent):
    # given the agent running the looping sample video with health every 0.5 s
    config = write_config(tmp_path, broker.port, loop=True)
    proc = start_agent(["run", "--config", config, "--source", "file://" + sample_video],
                       str(tmp_path / "agent.log"))
    try:
        got_health = subscriber.wait_for(lambda msgs: len(
            [m for m in msgs if m.topic.endswith("/health")]) >= 2, timeout_s=60)
        assert got_health, open(str(tmp_path / "agent.log")).read()
        # and it has looped past the end of the 60-frame file (waited for, however slow)
        looped = subscriber.wait_for(lambda msgs: len(
            [m for m in msgs if m.topic.endswith("/results")]) > 60, timeout_s=120)
        assert looped, open(str(tmp_path / "agent.log")).read()
        # and while it runs, a late subscriber gets the retained online status with the backend
        assert retained_status(broker) == ("online", "onnxruntime")
        # when it is killed without a chance to say goodbye
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    # then the broker publishes the last will: status offline
    assert subscriber.wait_for(lambda msgs: "offline" in states(
        [m for m in msgs if m.topic.endswith("/status")]), timeout_s=30)
    messages = subscriber.received()
    validate_all(schema_validator, messages)
    assert states(subscriber.received("/status"))[-1] == "offline"
    # and health reported a running pipeline with its backend, counters and stage latencies
    health = subscriber.received("/health")[-1].json()
    assert health["state"] == "running" and health["device_id"] == DEVICE
    assert health["backend"]["name"] == "onnxruntime" and health["backend"]["device"] == "cpu"
    assert health["frames"]["processed"] > 0 and health["fps"]["processed"] > 0
    assert {"preprocess", "infer", "postprocess"} <= set(health["latency_ms"])
    assert {"cpu_percent", "mem_used_mb", "mem_total_mb"} <= set(health["system"])
    assert health["camera"]["uri"] == "file://" + sample_video
    # and results kept flowing past the end of the file (looping), frame.index counting on
    indices = [m.json()["frame"]["index"] for m in subscriber.received("/results")]
    assert indices == list(range(len(indices))) and len(indices) > 60
    # and a late subscriber gets the retained offline
    assert retained_status(broker)[0] == "offline"
    assert os.path.exists(str(tmp_path / "state" / "outbox.sqlite"))


def test_looping_file_deleted_mid_run_exits_5_with_one_line(tmp_path, sample_video):
    from agent_proc import AgentProcess, write_config as write_agent_config
    # given the agent looping over a copy of the sample video
    clip = tmp_path / "clip.avi"
    clip.write_bytes(open(sample_video, "rb").read())
    config = write_agent_config(str(tmp_path / "agent.yaml"), device={"id": DEVICE},
                                pipeline="face-detect", source="file://%s?loop=1" % clip,
                                state_dir=str(tmp_path / "state"), mqtt={"enabled": False})
    with AgentProcess(config) as agent:
        assert agent.wait_result(60) is not None, agent.log_text()
        # when the file is deleted while it plays
        clip.unlink()
        # then the agent ends (at the end of the pass it had open) with exit 5 and one line
        code = agent.proc.wait(120)
        for reader in agent._readers:
            reader.join(5)
    log = agent.log_text()
    assert code == 5, log[-3000:]
    assert "Traceback" not in log
    assert ("edgeagent run: source error: file://%s?loop=1: cannot loop: cannot open video "
            "(file missing)" % clip) in log.splitlines()

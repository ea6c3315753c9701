"""Source URIs: one clear error for each bad one, secrets kept out of errors, the agent's own
query keys taken off stream URIs, and which schemes are live."""

import os

import pytest

from agent.errors import SourceError
from agent.sources import is_live, open_source, parse_uri
from agent.sources.uri import redact
from agent.sources.v4l2 import device_path

# ---- bad URIs: one clear error each ----------------------------------------------------

def _not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("hello, I am not a video")
    return "file://%s" % path


def _empty_dir(tmp_path):
    (tmp_path / "empty").mkdir()
    return "images://%s" % (tmp_path / "empty")


@pytest.mark.parametrize("make_uri, expected", [
    (lambda t: "file:///no/such/x.mp4", "file:///no/such/x.mp4: cannot open video (file missing)"),
    (_not_a_video, "cannot open video (OpenCV cannot decode it;"),
    (lambda t: "file://%s" % t, "cannot open video (a directory; use images://"),
    (lambda t: "images:///no/such/dir", "image directory /no/such/dir does not exist"),
    (_empty_dir, "has no jpg/jpeg/png/bmp files"),
    (lambda t: "ftp://host/x", "unknown source scheme 'ftp'; supported: file://, images://"),
    (lambda t: "v4l2:///dev/video99", "camera device /dev/video99 not found"),
    (lambda t: "synthetic://?width=abc", "width=abc must be an integer >= 1"),
    (lambda t: "synthetic://?fps=0", "fps=0 must be a number > 0"),
    (lambda t: "synthetic://?pattern=zebra", "pattern=zebra is unknown; use one of: bars"),
    (lambda t: "synthetic://?colour=red", "unknown query key 'colour' for synthetic:// sources"),
    (lambda t: "file:///x.avi?loop=maybe", "loop=maybe must be 1 or 0"),
    (lambda t: "v4l2:///dev/video0?fourcc=MJ", "fourcc=MJ must be 4 characters"),
    (lambda t: "csi://0?flip=9", "flip=9 must be 0-7"),
    (lambda t: "", "empty source"),
    (lambda t: "http://127.0.0.1:9/none?open_timeout_ms=500", "cannot connect to the stream"),
    (lambda t: "rtsp://cam/s?rtsp_transport=http", "rtsp_transport=http must be tcp or udp"),
    (lambda t: "rtsp://cam/s?open_timeout_ms=soon", "open_timeout_ms=soon must be an integer"),
])
def test_bad_uri_gives_one_clear_source_error(tmp_path, make_uri, expected):
    uri = make_uri(tmp_path)
    with pytest.raises(SourceError) as caught:
        open_source(uri)
    message = str(caught.value)
    assert message.startswith("source error: ")
    assert expected in message
    assert "\n" not in message


def test_password_never_appears_in_errors():
    uri = "rtsp://admin:s3cret@127.0.0.1:9/live?open_timeout_ms=500"
    with pytest.raises(SourceError) as caught:
        open_source(uri)
    assert "s3cret" not in str(caught.value) and "admin:***@127.0.0.1:9" in str(caught.value)
    assert redact("http://cam/x") == "http://cam/x"


def test_stream_uri_keeps_server_query_and_takes_only_agent_keys():
    spec = parse_uri("http://cam:8080/video?action=stream&read_timeout_ms=700&width=9")
    assert spec.target == "http://cam:8080/video?action=stream&width=9"
    assert spec.int_option("read_timeout_ms", 0) == 700


@pytest.mark.parametrize("uri, transport, target", [
    ("rtsp://cam/s", None, "rtsp://cam/s"),
    ("rtsp://cam/s?rtsp_transport=udp&profile=2", "udp", "rtsp://cam/s?profile=2"),
    ("rtsp://cam/s?rtsp_transport=TCP", "TCP", "rtsp://cam/s"),
    ("http://cam/s?rtsp_transport=udp", None, "http://cam/s?rtsp_transport=udp"),  # not ours
])
def test_rtsp_transport_is_the_agents_key_on_rtsp_only(uri, transport, target):
    spec = parse_uri(uri)
    assert spec.options.get("rtsp_transport") == transport and spec.target == target


@pytest.mark.parametrize("before, after_open", [
    (None, "rtsp_transport;udp"),
    ("stimeout;5000000|rtsp_transport;tcp", "stimeout;5000000|rtsp_transport;udp"),
])
def test_ffmpeg_options_are_set_for_the_open_only_and_keep_the_users_own(monkeypatch, before,
                                                                        after_open):
    from agent.sources.stream import FFMPEG_OPTIONS_ENV, _with_ffmpeg_options
    if before is None:
        monkeypatch.delenv(FFMPEG_OPTIONS_ENV, raising=False)
    else:
        monkeypatch.setenv(FFMPEG_OPTIONS_ENV, before)
    seen = _with_ffmpeg_options({"rtsp_transport": "udp"},
                                lambda: os.environ.get(FFMPEG_OPTIONS_ENV))
    assert seen == after_open and os.environ.get(FFMPEG_OPTIONS_ENV) == before



@pytest.mark.parametrize("uri, live", [
    ("file:///x.mp4", False), ("images:///d", False), ("synthetic://", False),
    ("synthetic://?live=1", True), ("rtsp://cam/s", True), ("https://cam/s", True),
    ("v4l2:///dev/video0", True), ("csi://0", True), ("picam://0", True)])
def test_which_uris_are_live(uri, live):
    assert is_live(parse_uri(uri)) is live


@pytest.mark.parametrize("target, path", [
    ("", "/dev/video0"), ("2", "/dev/video2"), ("/dev/video1", "/dev/video1")])
def test_v4l2_device_path(target, path):
    assert device_path(target) == path

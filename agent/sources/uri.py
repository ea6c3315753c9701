"""Source URIs: `scheme://target?key=value`, parsed and checked once into a SourceSpec.

Query values win over the width/height/fps/loop the caller passes (from the device profile).
Each scheme accepts only the keys it uses; any other key is an error naming the allowed ones,
so a typo never silently turns a setting off. Network stream URIs (rtsp/http/https) keep
their query for the server, minus the agent's own keys (open_timeout_ms, read_timeout_ms, and
for rtsp:// rtsp_transport=tcp|udp).
"""

from dataclasses import dataclass, field  # novm: the dataclasses backport serves 3.6
from typing import Dict, Optional, Tuple
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from ..errors import SourceError

SUPPORTED_SCHEMES = ("file", "images", "rtsp", "http", "https", "v4l2", "csi", "picam", "synthetic")
STREAM_SCHEMES = ("rtsp", "http", "https")
STREAM_KEYS = ("open_timeout_ms", "read_timeout_ms")
RTSP_TRANSPORTS = ("tcp", "udp")

# keys each scheme accepts in its query; width/height/fps/loop are also read from arguments
ALLOWED_KEYS = {
    "file": ("loop",),
    "images": ("loop",),
    "v4l2": ("width", "height", "fps", "fourcc"),
    "csi": ("width", "height", "fps", "flip"),
    "picam": ("width", "height", "fps"),
    "synthetic": ("width", "height", "fps", "pattern", "frames", "live"),
}

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


@dataclass(frozen=True)
class SourceSpec:
    """What to open: the scheme, its target (path, device or URL) and checked settings."""

    uri: str                      # as the user wrote it, for messages
    scheme: str
    target: str                   # file path, directory, device path, sensor id or stream URL
    width: Optional[int] = None
    height: Optional[int] = None
    fps: Optional[float] = None
    loop: bool = False
    options: Dict[str, str] = field(default_factory=dict)   # scheme-specific keys, as text

    def size(self, default: Tuple[int, int]) -> Tuple[int, int]:
        return (self.width or default[0], self.height or default[1])

    @property
    def display_uri(self) -> str:
        """The URI with any password hidden, for messages, logs and reports."""
        return redact(self.uri)

    def error(self, what: str) -> SourceError:
        return SourceError("%s: %s" % (self.display_uri, what))

    def int_option(self, key: str, default: int, lo: int = 0) -> int:
        return _to_int(self.uri, key, self.options.get(key), lo) if key in self.options else default

    def bool_option(self, key: str, default: bool) -> bool:
        return _to_bool(self.uri, key, self.options[key]) if key in self.options else default


def parse_uri(uri: str, width: Optional[int] = None, height: Optional[int] = None,
              fps: Optional[float] = None, loop: bool = False) -> SourceSpec:
    """Split and check a source URI; the query overrides the given defaults."""
    if not isinstance(uri, str) or not uri.strip():
        raise SourceError("%r: empty source; give a URI such as file:///path/video.mp4, "
                          "rtsp://camera/stream or v4l2:///dev/video0" % (uri,))
    if "://" not in uri:          # a plain path is a video file
        return SourceSpec(uri, "file", uri, width, height, fps, loop)
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme not in SUPPORTED_SCHEMES:
        raise SourceError("%s: unknown source scheme %r; supported: %s" % (
            redact(uri), scheme, ", ".join("%s://" % s for s in SUPPORTED_SCHEMES)))
    query = parse_qsl(parts.query, keep_blank_values=True)
    if scheme in STREAM_SCHEMES:
        return _stream_spec(uri, parts, query, width, height, fps)
    options = _check_keys(uri, scheme, query)
    return SourceSpec(
        uri, scheme, parts.netloc + parts.path,
        width=_to_int(uri, "width", options.pop("width"), 1) if "width" in options else width,
        height=_to_int(uri, "height", options.pop("height"), 1) if "height" in options else height,
        fps=_to_fps(uri, options.pop("fps")) if "fps" in options else fps,
        loop=_to_bool(uri, "loop", options.pop("loop")) if "loop" in options else loop,
        options=options)


def redact(uri: str) -> str:
    """rtsp://user:secret@host/x -> rtsp://user:***@host/x; other URIs unchanged."""
    if "://" not in uri:
        return uri
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    netloc = "%s:***@%s" % (parts.username, parts.netloc.rsplit("@", 1)[1])
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _stream_spec(uri, parts, query, width, height, fps) -> SourceSpec:
    keys = STREAM_KEYS + (("rtsp_transport",) if parts.scheme.lower() == "rtsp" else ())
    ours = dict((k, v) for k, v in query if k in keys)
    theirs = [(k, v) for k, v in query if k not in keys]
    for key in ("open_timeout_ms", "read_timeout_ms"):
        if key in ours:
            _to_int(redact(uri), key, ours[key], 1)
    transport = ours.get("rtsp_transport")
    if transport is not None and transport.lower() not in RTSP_TRANSPORTS:
        raise SourceError("%s: rtsp_transport=%s must be tcp or udp (tcp, the default, "
                          "passes firewalls and loses no packets)" % (redact(uri), transport))
    url = urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(theirs), parts.fragment))
    return SourceSpec(uri, parts.scheme.lower(), url, width, height, fps, False, ours)


def _check_keys(uri: str, scheme: str, query) -> Dict[str, str]:
    allowed = ALLOWED_KEYS[scheme]
    options = {}
    for key, value in query:
        if key not in allowed:
            raise SourceError("%s: unknown query key %r for %s:// sources; allowed: %s" % (
                uri, key, scheme, ", ".join(allowed)))
        options[key] = value
    return options


def _to_int(uri: str, key: str, text: Optional[str], lo: int) -> int:
    try:
        value = int(str(text))
    except ValueError:
        value = lo - 1
    if value < lo:
        raise SourceError("%s: %s=%s must be an integer >= %d" % (uri, key, text, lo))
    return value


def _to_fps(uri: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not 0 < value < 10000:     # also rejects nan and inf
        raise SourceError("%s: fps=%s must be a number > 0" % (uri, text))
    return value


def _to_bool(uri: str, key: str, text: str) -> bool:
    if text.lower() in _TRUE:
        return True
    if text.lower() in _FALSE:
        return False
    raise SourceError("%s: %s=%s must be 1 or 0 (true/false)" % (uri, key, text))

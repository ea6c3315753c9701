"""A real RTSP camera for tests: GStreamer's RTSP server (gst-rtsp-server) serving a live
MJPEG test pattern at rtsp://127.0.0.1:PORT/cam, over RTP/UDP or RTP/TCP as the client asks.

    /usr/bin/python3 tests/rtsp_server.py PORT [WIDTH HEIGHT FPS]

Runs on Debian's python3 (apt: gstreamer1.0-rtsp gir1.2-gst-rtsp-server-1.0 python3-gi
gstreamer1.0-plugins-base gstreamer1.0-plugins-good). Prints "listening" once the port is
bound, then serves until SIGTERM/SIGKILL. tests/streams.py RtspStream starts and kills it.
"""

import signal
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402


def main(argv):
    port = int(argv[1])
    width, height, fps = (int(v) for v in (argv[2:5] if len(argv) >= 5 else (320, 240, 15)))
    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service(str(port))
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( videotestsrc is-live=true pattern=ball ! video/x-raw,format=I420,width=%d,height=%d,"
        "framerate=%d/1 ! jpegenc quality=70 ! rtpjpegpay name=pay0 pt=26 )" % (
            width, height, fps))
    factory.set_shared(True)            # one camera, many viewers
    server.get_mount_points().add_factory("/cam", factory)
    if server.attach(None) == 0:
        sys.stderr.write("rtsp_server: cannot listen on 127.0.0.1:%d\n" % port)
        return 1
    loop = GLib.MainLoop()
    signal.signal(signal.SIGTERM, lambda *_: loop.quit())
    sys.stdout.write("listening\n")
    sys.stdout.flush()
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

"""OpenCV is needed on every board (decoding, resizing, cameras) but is not a plain dependency:
JetPack's GStreamer-enabled system cv2 must win over pip's wheels on Jetson (CSI cameras need
its GStreamer), pip's opencv-python-headless (the ``opencv`` extra) serves everywhere else.

``require_cv2`` runs before anything imports cv2, so a missing or broken OpenCV is one line and
exit 7 at start instead of an ImportError traceback from deep inside the pipeline.
"""

import os
from typing import Optional

from ..errors import MissingDependency

JETSON_MARKER = "etc/nv_tegra_release"


def install_hint(root: str = "/") -> str:
    """How to get a cv2 on this kind of board (Jetson: JetPack's; elsewhere: pip's)."""
    if os.path.isfile(os.path.join(root, JETSON_MARKER)):
        return ("on Jetson use JetPack's OpenCV: `sudo apt-get install python3-opencv` and a venv "
                "made with --system-site-packages (do not pip install opencv-python there: it "
                "has no GStreamer for CSI cameras); see docs/install/")
    return "install it with: pip install 'edgeagent[opencv]'; see docs/install/"


def cv2_problem(root: str = "/") -> Optional[str]:
    """None when cv2 imports, else the one-line reason with the fix."""
    # OpenCV's own C++ log writes multi-line ERROR reports to stderr for failures the agent
    # already reports in one line (OpenCV 4.6, the last for Python 3.6, does for an undecodable
    # video). Set before cv2 is imported; OPENCV_LOG_LEVEL=INFO in the environment brings them back.
    os.environ.setdefault("OPENCV_LOG_LEVEL", "FATAL")
    try:
        import cv2
    except ImportError as why:   # absent, or present with a shared library missing
        return "OpenCV (cv2) does not import in %s (%s); %s" % (
            _interpreter(), str(why).strip().splitlines()[0], install_hint(root))
    if not hasattr(cv2, "resize"):   # a namespace left behind by an uninstalled wheel
        return "OpenCV (cv2) at %s is incomplete (no cv2.resize); reinstall it: %s" % (
            getattr(cv2, "__path__", "?"), install_hint(root))
    return None


def require_cv2(root: str = "/") -> None:
    """Raises MissingDependency (exit 7) when cv2 cannot serve the pipeline."""
    problem = cv2_problem(root)
    if problem is not None:
        raise MissingDependency(problem)


def _interpreter() -> str:
    import sys
    return "Python %d.%d (%s)" % (sys.version_info[0], sys.version_info[1], sys.executable)

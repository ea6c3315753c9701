"""A missing OpenCV is one line and exit 7 at start, with the fix for this kind of board."""

import sys

import pytest

from agent.errors import MissingDependency
from agent.daemon.opencv import cv2_problem, require_cv2


def test_cv2_present_is_no_problem():
    assert cv2_problem() is None


@pytest.mark.parametrize("board,hint", [
    ("jetson-nano", "JetPack's OpenCV: `sudo apt-get install python3-opencv`"),
    ("raspberrypi-4", "pip install 'edgeagent[opencv]'"),
    ("generic-x86_64", "pip install 'edgeagent[opencv]'"),
])
def test_missing_cv2_names_the_fix_for_the_board(monkeypatch, recorded_root, board, hint):
    # given an interpreter where `import cv2` fails (None in sys.modules makes it raise)
    monkeypatch.setitem(sys.modules, "cv2", None)
    # when the start-up check runs against a recorded board
    with pytest.raises(MissingDependency) as error:
        require_cv2(recorded_root(board))
    # then it is exit 7 with one line naming the fix
    assert error.value.exit_code == 7
    text = str(error.value)
    assert "\n" not in text and text.startswith("missing dependency: OpenCV (cv2) does not import")
    assert hint in text


@pytest.fixture
def recorded_root():
    import os
    data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "devices")
    return lambda board: os.path.join(data, board)

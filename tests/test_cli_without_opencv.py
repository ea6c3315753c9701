"""The CLI's parser and `detect` must work where OpenCV does not import (a Jetson venv before
JetPack's python3-opencv is reachable, a deploy's pre-activation probe): only the commands that
touch frames need cv2, and they say so in one line (exit 7)."""

import json
import subprocess
import sys

from agent_proc import ROOT, agent_env

BLOCK_CV2 = """
import sys
class _NoOpenCV:
    def find_spec(self, name, path=None, target=None):
        if name == "cv2" or name.startswith("cv2."):
            raise ImportError("No module named 'cv2' (blocked by the test)")
sys.meta_path.insert(0, _NoOpenCV())
from agent.cli import main
code = main(sys.argv[1:])
sys.exit(code)
"""


def run_without_cv2(*argv):
    return subprocess.run([sys.executable, "-c", BLOCK_CV2] + list(argv), cwd=ROOT,
                          env=agent_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=120)


def test_detect_runs_and_reports_a_board_without_opencv():
    # given an interpreter where cv2 cannot be imported
    # when detect runs
    done = run_without_cv2("detect", "--json")
    # then it succeeds and names a profile
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["profile"]


def test_run_without_opencv_is_one_line_and_exit_7():
    # given no cv2, when run starts
    done = run_without_cv2("run", "--pipeline", "face-detect", "--source",
                           "synthetic://?width=64&height=64&fps=5", "--no-mqtt", "--max-frames", "1")
    # then it stops at once with the missing-dependency line
    assert done.returncode == 7, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "cv2" in lines[0], done.stderr

"""`python tests/faulty_agent.py run ...`: the real agent with a fault switch for tests only.

While the file named by $EDGEAGENT_TEST_FAULT_FILE exists, its content picks the fault:
  hang            inference blocks (a stuck model or driver) until the file is removed
  raise           inference raises: a pipeline thread crashes
  camera-raise    the camera recovery thread raises: a thread outside the pipeline dies
The agent itself has no such hook: this script patches two methods, then runs agent.cli.main.
"""

import os
import sys
import time

from agent import cli
from agent.inference import Inference
from agent.sources.recovery import RecoveringSource

FAULT_FILE = os.environ["EDGEAGENT_TEST_FAULT_FILE"]


def fault() -> str:
    try:
        with open(FAULT_FILE) as handle:
            return handle.read().strip()
    except FileNotFoundError:
        return ""


def patch(cls, name: str, faults):
    original = getattr(cls, name)

    def faulty(self, *args, **kwargs):
        while fault() in faults:
            if fault() == "hang":
                time.sleep(0.02)
                continue
            raise RuntimeError("injected %s fault (tests/faulty_agent.py)" % fault())
        return original(self, *args, **kwargs)
    setattr(cls, name, faulty)


patch(Inference, "infer", ("hang", "raise"))
patch(RecoveringSource, "_deliver", ("camera-raise",))

if __name__ == "__main__":
    sys.exit(cli.main())

"""A deploy killed (SIGKILL) at random points leaves `current` at a complete release."""

import os
import random
import signal
import subprocess
import time

from sshd import REPO, current_release, deploy_command, run_deploy, session_sshd


def assert_current_is_complete(root):
    link = current_release(root)
    release = os.path.join(root, "opt", "edgeagent", link)
    assert link.startswith("releases/") and os.path.isfile(os.path.join(release, "COMPLETE")), link
    assert os.access(os.path.join(release, "venv", "bin", "edgeagent"), os.X_OK)


def test_sigkilled_deploys_leave_current_at_a_complete_release(tmp_path):
    # given a deployed device and the time one full deploy takes
    server = session_sshd()
    known_hosts = server.write_known_hosts(str(tmp_path / "kh"), server.ports[:1])
    root = str(tmp_path / "dev")
    model = tmp_path / "m.onnx"
    model.write_text("0")
    args = ["root@127.0.0.1:%d" % server.ports[0], "--remote-root", root, "--model", str(model)]
    started = time.monotonic()
    assert run_deploy(server, known_hosts, *args)[0].returncode == 0
    full = time.monotonic() - started
    seen = {current_release(root)}
    rng = random.Random(1234)
    # when six deploys of new releases are killed at random points (with or without their ssh)
    for attempt in range(1, 7):
        model.write_text(str(attempt))
        proc = subprocess.Popen(deploy_command(server, known_hosts, *args), cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                start_new_session=True)
        time.sleep(rng.uniform(0.2, full))
        if attempt % 2:
            os.killpg(proc.pid, signal.SIGKILL)   # the deploy and its ssh/sftp children
        else:
            proc.kill()                           # the deploy only; orphaned ssh goes on
        proc.wait()
        # then current is at a complete release right away, and after orphans finished
        assert_current_is_complete(root)
        time.sleep(0.3)
        assert_current_is_complete(root)
        seen.add(current_release(root))
    # and a deploy afterwards cleans up and succeeds
    done, _ = run_deploy(server, known_hosts, *args)
    assert done.returncode == 0, done.stderr
    assert_current_is_complete(root)
    print("releases seen as current across kills: %d" % len(seen))

"""Many hosts: canary batches (`--serial 1,5,100%`), at most `--forks` at once, and a failure
budget (`--max-fail N`) that stops starting new hosts once more than N have failed."""

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, List, Optional, Sequence

from ...errors import ConfigError
from .host_deploy import HostResult
from .inventory import Host

log = logging.getLogger(__name__)


def parse_serial(text: Optional[str]) -> List[str]:
    """'1,5,100%' -> ['1', '5', '100%'], each a positive count or a percentage."""
    if not text:
        return ["100%"]
    steps = [s.strip() for s in text.split(",")]
    for step in steps:
        number = step[:-1] if step.endswith("%") else step
        if not number.isdigit() or int(number) < 1 or (step.endswith("%") and int(number) > 100):
            raise ConfigError("--serial %s: %r must be a count >= 1 or a percentage 1%%..100%%, "
                              "e.g. --serial 1,5,100%%" % (text, step))
    return steps


def batches(hosts: Sequence[Host], serial: Sequence[str]) -> List[List[Host]]:
    """Split hosts into batches of the serial sizes; the last size repeats until all are done."""
    out, start, i = [], 0, 0
    while start < len(hosts):
        step = serial[min(i, len(serial) - 1)]
        size = (max(1, len(hosts) * int(step[:-1]) // 100) if step.endswith("%") else int(step))
        out.append(list(hosts[start:start + size]))
        start += size
        i += 1
    return out


def run_rollout(hosts: Sequence[Host], deploy_one: Callable[[Host], HostResult], forks: int,
                serial: Sequence[str], max_fail: Optional[int]) -> List[HostResult]:
    """Results in host order; hosts not started because the budget ran out are 'skipped'."""
    results = {}
    lock = threading.Lock()
    stop = threading.Event()
    failures = [0]

    def one(host: Host) -> None:
        if stop.is_set():
            results[host.name] = HostResult(host.name, None, None, "skipped", 0.0,
                                            "failure budget (--max-fail %s) used up" % max_fail)
            return
        result = deploy_one(host)
        with lock:
            results[host.name] = result
            if result.failed:
                failures[0] += 1
                if max_fail is not None and failures[0] > max_fail and not stop.is_set():
                    log.error("%d hosts failed (--max-fail %d): stopping the rollout",
                              failures[0], max_fail)
                    stop.set()

    for number, batch in enumerate(batches(hosts, serial), 1):
        if len(hosts) > len(batch):
            log.info("batch %d: %s", number, ", ".join(h.name for h in batch))
        with ThreadPoolExecutor(max_workers=max(1, forks)) as pool:
            for future in [pool.submit(one, h) for h in batch]:
                future.result()
    return [results[h.name] for h in hosts]


def format_table(results: Sequence[HostResult]) -> str:
    rows = [("HOST", "RELEASE (old -> new)", "RESULT", "SECONDS")]
    for r in results:
        rows.append((r.host, "%s -> %s" % (r.old or "-", r.new or "-"), r.result,
                     "%.1f" % r.seconds))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]
    notes = ["%s: %s" % (r.host, r.message) for r in results
             if r.message and r.result not in ("ok",)]
    return "\n".join(lines + ([""] + notes if notes else []))

"""What `edgeagent monitor` draws: the per-device table, the header line, and the in-place
redraw on a terminal. Rows come from agent/fleet/monitor.py DeviceView.row()."""

import datetime
import os
import shutil
from typing import Dict, List, Optional

STAGES = ("preprocess", "infer", "postprocess")

COLUMNS = (("DEVICE", "device"), ("STATE", "state"), ("PIPELINE", "pipeline"),
           ("BACKEND", "backend"), ("FPS", "fps"), ("INFER ms", "infer_ms"),
           ("P95 pre/inf/post ms", "p95_ms"), ("TEMP °C", "temps_c"),
           ("OUTBOX pend/drop", "outbox"), ("RESULTS", "results"), ("GAPS", "gaps"),
           ("LAST SEEN", "last_seen_s"))


def _cell(row: Dict, key: str) -> str:
    if key == "state":
        return row["state"].upper() if row["marked"] else row["state"]
    if key == "p95_ms":
        p95 = row["p95_ms"]
        order = [s for s in STAGES if s in p95] + sorted(set(p95) - set(STAGES))
        return "/".join(_num(p95[s]) for s in order) if order else "-"
    if key == "temps_c":
        return " ".join("%s %.0f" % (k, v) for k, v in sorted(row["temps_c"].items())) or "-"
    if key == "outbox":
        if row["outbox_pending"] is None:
            return "-"
        return "%s/%s" % (row["outbox_pending"], "-" if row["outbox_dropped"] is None
                          else row["outbox_dropped"])
    if key == "last_seen_s":
        return _age(row["last_seen_s"])
    value = row.get(key)
    return "-" if value is None or value == "" else _num(value) if isinstance(value, float) else str(value)


def _num(value) -> str:
    return "-" if value is None else ("%.1f" % value if isinstance(value, float) else str(value))


def _age(seconds: Optional[float]) -> str:
    if seconds is None:
        return "never"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s ago" % (seconds // size, unit)
    return "%ds ago" % seconds


def format_table(rows: List[Dict]) -> str:
    cells = [[_cell(row, key) for _, key in COLUMNS] for row in rows]
    widths = [max([len(title)] + [len(r[i]) for r in cells]) for i, (title, _) in enumerate(COLUMNS)]
    lines = ["  ".join(title.ljust(w) for (title, _), w in zip(COLUMNS, widths)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in cells]
    if not rows:
        lines.append("(no device has reported yet)")
    return "\n".join(lines)


def format_screen(rows: List[Dict], where: str, stale_after_s: float, now: float) -> str:
    marked = [r for r in rows if r["marked"]]
    stamp = datetime.datetime.fromtimestamp(now, datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    head = "edgeagent monitor  %s  %s  %d device%s, %d offline or stale (silent > %gs)  Ctrl-C quits" % (
        stamp, where, len(rows), "" if len(rows) == 1 else "s", len(marked), stale_after_s)
    return head + "\n\n" + format_table(rows)


class Screen:
    """ANSI in-place redraw: no scrolling, no flicker, the cursor hidden until close()."""

    def __init__(self, out) -> None:
        self.out = out
        self.out.write("\x1b[?25l\x1b[2J")

    def draw(self, text: str) -> None:
        try:    # the terminal itself: a COLUMNS inherited from elsewhere may be stale
            width = os.get_terminal_size(self.out.fileno()).columns
        except (OSError, ValueError):
            width = shutil.get_terminal_size((120, 40)).columns
        lines = [line[:width] for line in text.splitlines()]
        self.out.write("\x1b[H" + "".join(line + "\x1b[K\n" for line in lines) + "\x1b[J")
        self.out.flush()

    def close(self) -> None:
        self.out.write("\x1b[?25h")
        self.out.flush()

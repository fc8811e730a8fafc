"""Shared benchmark helpers: data, timing, machine description, table rows."""

from __future__ import annotations

import csv
import gc
import os
import platform
import resource
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "rt_polarity.csv"


def load_texts(n):
    """First ``n`` texts of rt_polarity (../shared/data), else the demo corpus.

    Returns ``(texts, source)``.
    """
    if SHARED_DATA.exists():
        with SHARED_DATA.open(encoding="utf-8", newline="") as f:
            texts = [r["text"] for r in csv.DictReader(f)]
        return texts[:n], f"rt_polarity.csv (first {min(n, len(texts))} texts)"
    from skconcepts.datasets import load_demo_corpus

    texts = load_demo_corpus()[0]
    reps = -(-n // len(texts))
    return (texts * reps)[:n], f"demo corpus repeated to {n} texts"


def timed(fn, *args, repeat=1, **kwargs):
    """Best wall time of ``repeat`` calls and the last result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        out = fn(*args, **kwargs)
        best = min(best, time.perf_counter() - t0)
    return best, out


def cpu_model():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def machine_description():
    import sklearn
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "none"
    return {
        "CPU": cpu_model(),
        "cores": os.cpu_count(),
        "torch threads": torch.get_num_threads(),
        "GPU": gpu,
        "Python": platform.python_version(),
        "torch": torch.__version__,
        "scikit-learn": sklearn.__version__,
    }


def matmul_gflops(dtype="float32", n=2048, repeat=5):
    """Measured dense matmul rate of this machine (GFLOP/s)."""
    import torch

    dt = getattr(torch, dtype)
    a = torch.randn(n, n).to(dt)
    b = torch.randn(n, n).to(dt)
    a @ b
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best / 1e9


def peak_rss_mb():
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def row(
    name,
    ours_s,
    baseline,
    baseline_s,
    *,
    quality="",
    target="",
    note="",
    higher_is_better_ratio=True,
    met=None,
):
    """One table row; ratio = baseline time / our time (higher: we are faster)."""
    ratio = baseline_s / ours_s if ours_s and baseline_s else None
    return {
        "benchmark": name,
        "ours (s)": ours_s,
        "baseline": baseline,
        "baseline (s)": baseline_s,
        "speed-up": ratio,
        "quality (ours / baseline)": quality,
        "target": target,
        # a numpy bool (a comparison of numpy values) renders as yes/no too
        "met": None if met is None else bool(met),
        "note": note,
    }


COLUMNS = [
    "benchmark",
    "ours (s)",
    "baseline",
    "baseline (s)",
    "speed-up",
    "quality (ours / baseline)",
    "target",
    "met",
    "note",
]


def _fmt(v):
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "**no**"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1000 else f"{v:.0f}"
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(rows):
    """Rows (dicts) as a markdown table; unknown keys are folded into the note."""
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        extra = {k: v for k, v in r.items() if k not in COLUMNS}
        cells = {c: r.get(c) for c in COLUMNS}
        if "benchmark" not in r:
            cells["benchmark"] = r.get("name") or r.get("row") or "?"
            extra.pop("name", None)
            extra.pop("row", None)
        if extra:
            more = "; ".join(f"{k}={_fmt(v)}" for k, v in extra.items())
            cells["note"] = f"{_fmt(cells['note'])} {more}".strip()
        lines.append("| " + " | ".join(_fmt(cells[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


class PeakTreeRSS:
    """Peak resident memory (MB) of this process and all its children.

    A context manager that samples, every ``interval`` seconds in a thread, the
    summed RSS of the process tree (worker processes included), and keeps the
    peak in ``peak_mb``.
    """

    def __init__(self, interval=0.05):
        self.interval = interval
        self.peak_mb = 0.0

    def _sample(self):
        import psutil

        me = psutil.Process()
        total = 0
        for proc in [me, *me.children(recursive=True)]:
            try:
                total += proc.memory_info().rss
            except (psutil.NoSuchProcess, psutil.AccessDenied):
                pass
        self.peak_mb = max(self.peak_mb, total / 2**20)

    def _run(self):
        while not self._stop.wait(self.interval):
            self._sample()

    def __enter__(self):
        import threading

        self._stop = threading.Event()
        self._sample()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._sample()
        return False

"""Peak memory of extract_to_store: does it stay flat as the corpus grows?

Extracts MiniLM token activations (split point 3, float32, default shard size)
of a small and a large corpus into an ActivationStore, each in a fresh
subprocess, and reads the peak resident set size of that subprocess from the
kernel (``os.wait4`` returns the child's ``rusage``; ``ru_maxrss``, no psutil).
A store writer with bounded memory (``skconcepts/store/_writer.py`` publishes
one shard at a time) gives the same peak for both sizes: the difference must
stay under 100 MB. A third subprocess that only loads the model
gives the fixed baseline (torch, transformers, the weights).

Texts come from ``rt_polarity.csv`` in ``../shared/data`` (relative to the
repository root) when it is there, else from the demo corpus; they are repeated
until the corpus has the number of token rows asked for.

Run ``python bench/bench_store.py`` (full sizes: 50 000 and 200 000 rows) or
``python bench/bench_store.py --quick`` (20 000 and 80 000 rows); or call
``run(quick=True)``, which returns one dict per measurement.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RT_POLARITY = REPO.parent / "shared" / "data" / "rt_polarity.csv"
SIZES = {True: (20_000, 80_000), False: (50_000, 200_000)}
#: largest accepted difference of peak RSS between the two sizes
MAX_DIFFERENCE_MB = 100
SPLIT_POINT = 3


def load_texts():
    """The benchmark texts and where they come from."""
    if RT_POLARITY.is_file():
        with open(RT_POLARITY, encoding="utf-8", newline="") as f:
            return [row["text"] for row in csv.DictReader(f)], "rt_polarity.csv"
    from skconcepts.datasets import load_demo_corpus

    return load_demo_corpus()[0], "demo corpus"


def _worker(n_rows, path):
    """Extract about ``n_rows`` token rows into ``path``; print a JSON line."""
    from skconcepts import SplitPointActivations, extract_to_store
    from skconcepts.datasets import load_embedded_model

    start = time.perf_counter()
    model, tokenizer = load_embedded_model()
    result = {"load_s": time.perf_counter() - start}
    if n_rows:
        base, source = load_texts()
        lengths = [
            len(ids) for ids in tokenizer(base, add_special_tokens=False)["input_ids"]
        ]
        texts, total = [], 0
        while total < n_rows:
            i = len(texts) % len(base)
            texts.append(base[i])
            total += lengths[i]
        acts = SplitPointActivations(
            model, tokenizer=tokenizer, split_point=SPLIT_POINT, cache=False
        ).fit()
        start = time.perf_counter()
        store = extract_to_store(acts, texts, path)
        result.update(
            texts=len(texts),
            rows=len(store),
            shards=store.n_shards,
            shard_rows=max(s["rows"] for s in store.manifest["shards"]),
            extract_s=time.perf_counter() - start,
            source=source,
        )
    print(json.dumps(result))


def _measure(n_rows, workdir, threads):
    """Run one worker in a fresh subprocess; its output and peak RSS in MB."""
    out = Path(workdir) / f"out-{n_rows}.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(
            p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p
        ),
        "OMP_NUM_THREADS": str(threads),
    }
    cmd = [sys.executable, __file__, "--worker", str(n_rows)]
    cmd.append(str(Path(workdir) / f"store-{n_rows}"))
    with open(out, "w") as stdout:
        proc = subprocess.Popen(cmd, stdout=stdout, env=env, cwd=REPO)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark worker {cmd} failed ({proc.returncode})")
    result = json.loads(out.read_text().strip().splitlines()[-1])
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: KiB on Linux
    result["peak_rss_mb"] = usage.ru_maxrss * scale / 2**20
    return result


def run(quick=True, threads=1):
    """Measure the peak RSS of extract_to_store at two corpus sizes.

    Parameters
    ----------
    quick : bool, default=True
        Use 20 000 and 80 000 token rows instead of 50 000 and 200 000.
    threads : int, default=1
        Torch threads of each worker (``OMP_NUM_THREADS``).

    Returns
    -------
    rows : list of dict
        One row per subprocess (baseline, small, large) and a summary row with
        the difference of peak RSS and whether it is under 100 MB (``met``), with
        the keys of ``bench._common.markdown_table``.
    """
    small, large = SIZES[bool(quick)]
    size = "quick sizes" if quick else "full sizes"
    runs = {}
    with tempfile.TemporaryDirectory(prefix="bench_store-") as workdir:
        for n in (0, small, large):
            runs[n] = _measure(n, workdir, threads)
    rows = []
    for n, r in runs.items():
        if not n:
            rows.append(
                {
                    "benchmark": "store: peak RSS of loading MiniLM only (baseline)",
                    "peak RSS (MB)": round(r["peak_rss_mb"], 1),
                }
            )
            continue
        rows.append(
            {
                "benchmark": f"store: extract_to_store of {r['rows']} token rows",
                "ours (s)": round(r["extract_s"], 2),
                "peak RSS (MB)": round(r["peak_rss_mb"], 1),
                "texts": r["texts"],
                "shards": r["shards"],
                "largest shard (rows)": r["shard_rows"],
                "note": f"{r['source']}, {size}, {threads} thread(s)",
            }
        )
    diff = runs[large]["peak_rss_mb"] - runs[small]["peak_rss_mb"]
    rows.append(
        {
            "benchmark": f"store: peak RSS {large} rows - {small} rows ({size})",
            "peak RSS difference (MB)": round(diff, 1),
            "target": f"< {MAX_DIFFERENCE_MB} MB",
            "met": abs(diff) < MAX_DIFFERENCE_MB,
            "note": "each size in a fresh subprocess (os.wait4 ru_maxrss)",
        }
    )
    return rows


def _print_table(rows):
    cols = []
    for row in rows:
        cols += [k for k in row if k not in cols]
    table = [[str(row.get(c, "")) for c in cols] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]
    print("  ".join(c.ljust(w) for c, w in zip(cols, widths)))
    for r in table:
        print("  ".join(v.ljust(w) for v, w in zip(r, widths)))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker(int(sys.argv[2]), sys.argv[3])
    else:
        result = run(quick="--quick" in sys.argv)
        _print_table(result)
        sys.exit(0 if result[-1]["met"] else 1)

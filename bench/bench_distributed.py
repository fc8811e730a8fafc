"""Store extraction on Ray (section "distributed") against local extraction.

Three runs write the same store of MiniLM token activations (all six blocks,
``split_point=-1``, float32) of the benchmark texts, each from an unfitted
extractor given by its folder (the embedded model), so that every timing is
"from a model folder to a complete store" and includes loading the model:

- local, 1 torch thread (``torch.set_num_threads(1)``);
- local, 2 torch threads;
- Ray, 2 actors of 1 CPU each (``extract_to_store_ray(num_workers=2,
  cpus_per_worker=1)``) on a local Ray cluster of 2 CPUs started beforehand
  (``ray.init`` is not timed: a cluster exists before a job). Its time
  includes starting the two actor processes and loading the model in each
  (the driver loads none: the model's identity for the manifest comes from
  the actors); that startup is also timed alone (a run on 8 texts) and
  reported.

The same three runs are also timed each in a fresh Python process (``python
-c``, from the interpreter's start to the complete store; the Ray driver joins
the running cluster with ``ray.init(address="auto")``). In the warm runs this
process has imported torch and transformers before the local timings start,
while Ray's actors import them inside Ray's time (about 4.5 s here); from a
fresh process both sides pay their imports, and their interpreters' start and
exit, which is what a script pays.

In ``--full`` the texts are rt_polarity's 10 000 texts taken twice (20 000
texts, about 510 000 token rows): the actors' start is a fixed cost of
imports on both cores (about 4.5 s here), and a job of one pass (65 s on one
thread) is short next to the hours a real extraction takes. Both the start
and the ratio without it are in the note.

Rows: Ray vs local 1 thread (target >= 1.7x) and Ray vs local 2 threads at
equal cores (overhead <= 15 %, i.e. speed-up >= 0.87). The targets are judged
on the warm rows, which time the call ``extract_to_store_ray(...)`` itself;
the fresh rows are shown with their numbers, not judged (a Ray script's
driver imports come before its actors' imports can start).
Quality: the largest absolute difference between the Ray and the local store,
and equal units.
Figures taken on a loaded machine are indicative only (the load average at the
start is in the note).

Run ``python -m bench --quick --only distributed``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

from bench._common import load_texts, row

#: texts per run; --full takes rt_polarity's 10 000 texts twice (a store may
#: hold a text twice): the actors' start (about 4.5 s of imports here, on both
#: cores) is a fixed cost that a real extraction (hours) amortises, and one
#: pass is a 65 s job on one thread
N_TEXTS = {True: 600, False: 10_000}
PASSES = {True: 1, False: 2}
SPLIT_POINT = -1


def _acts():
    from skconcepts import SplitPointActivations

    return SplitPointActivations(split_point=SPLIT_POINT, cache=False)


def _local(texts, path, threads):
    import torch

    from skconcepts.store import extract_to_store

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        store = extract_to_store(_acts(), texts, path)
        return time.perf_counter() - t0, store
    finally:
        torch.set_num_threads(before)


def _ray(texts, path):
    from skconcepts.distributed import extract_to_store_ray

    t0 = time.perf_counter()
    store = extract_to_store_ray(
        _acts(), texts, path, num_workers=2, cpus_per_worker=1, progress=False
    )
    return time.perf_counter() - t0, store


_FRESH = {
    "local": (
        "import sys, json, torch\n"
        "from skconcepts import SplitPointActivations\n"
        "from skconcepts.store import extract_to_store\n"
        "torch.set_num_threads({threads})\n"
        "texts = json.load(open(sys.argv[1]))\n"
        "extract_to_store(SplitPointActivations(split_point={split}, cache=False),"
        " texts, sys.argv[2], progress=False)\n"
    ),
    "ray": (
        "import sys, json, ray\n"
        "from skconcepts import SplitPointActivations\n"
        "from skconcepts.distributed import extract_to_store_ray\n"
        "ray.init(address='auto', log_to_driver=False)\n"
        "texts = json.load(open(sys.argv[1]))\n"
        "extract_to_store_ray(SplitPointActivations(split_point={split}, "
        "cache=False), texts, sys.argv[2], num_workers=2, cpus_per_worker=1, "
        "progress=False)\n"
    ),
}


def _fresh(kind, texts_file, path, threads=1):
    """Seconds from a fresh ``python -c`` to its complete store."""
    code = _FRESH[kind].format(threads=threads, split=SPLIT_POINT)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-c", code, texts_file, path], check=True)
    return time.perf_counter() - t0


def _rows(kind, ray_s, one_s, two_s, quality, note, same, targeted=True):
    """Ray vs 1 and 2 local threads; ``targeted=False``: shown, not judged."""
    untargeted = "none: whole scripts, see the note (the target is on the warm rows)"
    r1 = row(
        f"distributed: Ray extraction, 2 actors x 1 CPU vs local 1 thread ({kind})",
        ray_s,
        "extract_to_store, 1 thread",
        one_s,
        quality=quality,
        target=">= 1.7x" if targeted else untargeted,
        note=note,
    )
    r2 = row(
        "distributed: Ray extraction, 2 actors x 1 CPU vs local 2 threads "
        f"(equal cores, {kind})",
        ray_s,
        "extract_to_store, 2 threads",
        two_s,
        quality=quality,
        target="overhead <= 15% (speed-up >= 0.87)" if targeted else untargeted,
        note=note,
    )
    if targeted:
        r1["met"] = bool(r1["speed-up"] >= 1.7 and same)
        r2["met"] = bool(r2["speed-up"] >= 1 / 1.15 and same)
    return [r1, r2]


def run(quick=True):
    try:
        import ray
    except ImportError:
        return [
            {
                "benchmark": "distributed: Ray extraction",
                "note": "skipped: Ray is not installed (pip install 'skconcepts[ray]')",
            }
        ]
    from skconcepts.store import ActivationStore

    texts, source = load_texts(N_TEXTS[quick])
    if PASSES[quick] > 1:
        texts = texts * PASSES[quick]
        source = f"{source}, {PASSES[quick]} passes: {len(texts)} texts"
    load = os.getloadavg()[0]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            startup, _ = _ray(texts[:8], f"{tmp}/startup")
            ray_s, ray_store = _ray(texts, f"{tmp}/ray")
            one_s, one = _local(texts, f"{tmp}/local1", 1)
            two_s, two = _local(texts, f"{tmp}/local2", 2)
            same = ray_store.units().equals(one.units())
            diff = float(np.abs(ray_store[:] - one[:]).max())
            rows = len(ray_store)
            texts_file = f"{tmp}/texts.json"
            with open(texts_file, "w", encoding="utf-8") as f:
                json.dump(texts, f)
            fresh_ray = _fresh("ray", texts_file, f"{tmp}/fresh-ray")
            fresh_one = _fresh("local", texts_file, f"{tmp}/fresh-1", threads=1)
            fresh_two = _fresh("local", texts_file, f"{tmp}/fresh-2", threads=2)
            ray_store_fresh = ActivationStore(f"{tmp}/fresh-ray")
            one_store_fresh = ActivationStore(f"{tmp}/fresh-1")
            fresh_same = ray_store_fresh.units().equals(one_store_fresh.units())
            fresh_diff = float(np.abs(ray_store_fresh[:] - one_store_fresh[:]).max())
    finally:
        ray.shutdown()
    what = f"{len(texts)} texts ({source}), {rows} token rows, MiniLM all 6 blocks; "
    warm_note = what + (
        f"this process had imported torch and transformers; Ray's time includes "
        f"{startup:.1f} s of actor start (imports) + model load in the actors "
        "(the driver loads no model); "
        f"{rows / ray_s:.0f} rows/s Ray, {rows / one_s:.0f} rows/s local 1 thread, "
        f"{rows / two_s:.0f} rows/s local 2 threads; without the startup Ray is "
        f"{one_s / max(ray_s - startup, 1e-9):.2f}x local 1 thread and "
        f"{two_s / max(ray_s - startup, 1e-9):.2f}x local 2 threads; load average "
        f"{load:.1f} at start"
    )
    fresh_note = what + (
        "each run a fresh python -c, timed from its start to its exit "
        f"(imports, model load, extraction); Ray {fresh_ray:.1f} s, local 1 "
        f"thread {fresh_one:.1f} s, local 2 threads {fresh_two:.1f} s. The Ray "
        "script pays its driver's imports (torch, scikit-learn: about 2 s) "
        "before its actors can start and import their own (about 4.5 s), "
        "then the exit of an interpreter holding torch and Ray; the local "
        "script pays one set of imports. These rows time the interpreters as "
        "much as the extraction: the target is on the warm rows, which time "
        "the call itself, actors' start and model loads included"
    )
    quality = f"max |ray - local| = {diff:.1e}; units equal: {same}"
    fresh_quality = f"max |ray - local| = {fresh_diff:.1e}; units equal: {fresh_same}"
    return _rows("warm driver", ray_s, one_s, two_s, quality, warm_note, same) + _rows(
        "fresh processes",
        fresh_ray,
        fresh_one,
        fresh_two,
        fresh_quality,
        fresh_note,
        fresh_same,
        targeted=False,
    )


if __name__ == "__main__":
    import sys

    from bench._common import markdown_table

    print(markdown_table(run(quick="--full" not in sys.argv)))

"""Writers and readers of one store at once (issue 12, item 6), and resume after
corruption (item 8): a writer lock, a generation id checked by every reader."""

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from skconcepts.exceptions import (
    StoreChangedError,
    StoreCorruptedError,
    StoreLockedError,
)
from skconcepts.store import ActivationStore, extract_to_store, write_array_store

REPO = Path(__file__).resolve().parents[2]
LOCK = ".skconcepts-store.lock"

# a model-free extractor, slowed down, writing one store in another process
_SCRIPT = textwrap.dedent(
    """
    import hashlib, re, sys, time
    import numpy as np, torch
    from sklearn.base import BaseEstimator
    from skconcepts.store import extract_to_store

    class Slow(BaseEstimator):
        def __init__(self, batch_size=3):
            self.batch_size = batch_size
        def fit(self, X=None, y=None):
            self.model_ = "fake"
            return self
        def iter_batches(self, texts, *, use_cache=None, chunk_size=None):
            time.sleep(0.5)  # the test writes meanwhile
            rows, spans = [], []
            for t in texts:
                seed = int(hashlib.sha256(t.encode()).hexdigest()[:8], 16)
                n = len(t.split())
                rng = np.random.default_rng(seed)
                rows.append(torch.from_numpy(rng.standard_normal((n, 5), np.float32)))
                s = [m.span() for m in re.finditer(r"\\S+", t)]
                spans.append(np.asarray(s, dtype=np.int64).reshape(-1, 2))
            yield np.arange(len(texts)), rows, spans

    texts = [" ".join(f"w{i}x{j}" for j in range(1 + i % 7)) for i in range(40)]
    extract_to_store(Slow(), texts, sys.argv[1], shard_rows=25)
    print("done")
    """
)


def _writer_process(path):
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-c", _SCRIPT, str(path)],
        env=env,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_a_second_process_writing_the_store_is_refused(
    tmp_path, fake_activations, fake_texts, files_of
):
    path = tmp_path / "store"
    proc = _writer_process(path)
    try:
        deadline = time.monotonic() + 120
        while not (path / LOCK).exists():
            assert proc.poll() is None, proc.communicate()[1].decode()[-2000:]
            assert time.monotonic() < deadline, "the writer never took its lock"
            time.sleep(0.02)
        # this process is a second writer: refused, whatever its arguments
        for overwrite in (False, True):
            with pytest.raises(StoreLockedError) as info:
                extract_to_store(
                    fake_activations(),
                    fake_texts,
                    path,
                    shard_rows=25,
                    overwrite=overwrite,
                )
            msg = str(info.value)
            assert f"pid {proc.pid}" in msg and socket.gethostname() in msg
            assert str(path) in msg
        with pytest.raises(StoreLockedError, match=f"pid {proc.pid}"):
            write_array_store(np.zeros((3, 5), np.float32), path, overwrite=True)
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert not (path / LOCK).exists()  # released
    # the first writer's store is whole and equals one written alone
    reference = extract_to_store(
        fake_activations(), fake_texts, tmp_path / "ref", shard_rows=25
    )
    a, b = files_of(path), files_of(reference.path)
    del a["manifest.json"], b["manifest.json"]  # their sources differ
    assert a == b  # every shard file
    ActivationStore(path).verify_all()


def test_a_stale_lock_is_taken_over_with_a_warning(
    tmp_path, fake_activations, fake_texts, files_of
):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    tmp_path.mkdir(exist_ok=True)
    lock = tmp_path / LOCK
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname()}))
    with pytest.warns(RuntimeWarning, match=f"stale writer lock.*pid {dead.pid}"):
        store = extract_to_store(fake_activations(), fake_texts, tmp_path)
    assert not lock.exists()
    assert store.shape[0] > 0


def test_a_live_lock_of_another_host_is_not_taken_over(tmp_path):
    (tmp_path / LOCK).write_text(json.dumps({"pid": 1, "host": "elsewhere"}))
    with pytest.raises(StoreLockedError, match=r"pid 1 on host 'elsewhere'"):
        write_array_store(np.zeros((3, 2), np.float32), tmp_path)
    assert (tmp_path / LOCK).exists()  # still held


def test_the_lock_is_released_when_the_write_fails(
    tmp_path, fake_activations, fake_texts
):
    class Broken(Exception):
        pass

    class Failing(fake_activations):
        def iter_batches(self, *args, **kwargs):
            raise Broken
            yield

    with pytest.raises(Broken):
        extract_to_store(Failing(), fake_texts, tmp_path)
    assert not (tmp_path / LOCK).exists()
    extract_to_store(fake_activations(), fake_texts, tmp_path, overwrite=True)


def test_temporary_names_are_unique_per_writer(tmp_path):
    from skconcepts.store._format import _write_atomic

    seen = []
    real = os.replace

    def spy(src, dst):
        seen.append(Path(src).name)
        return real(src, dst)

    try:
        os.replace = spy
        _write_atomic(tmp_path / "shard-00000.npy", lambda fp: fp.write(b"a"))
        _write_atomic(tmp_path / "shard-00000.npy", lambda fp: fp.write(b"b"))
    finally:
        os.replace = real
    assert len(set(seen)) == 2 and all(str(os.getpid()) in n for n in seen)


# ------------------------------------------------------ overwrite under a reader
@pytest.mark.parametrize("verify", [True, False])
def test_a_reader_raises_when_the_store_is_overwritten(tmp_path, verify):
    rng = np.random.default_rng(0)
    old, new = rng.normal(size=(2, 60, 4)).astype(np.float32)
    write_array_store(old, tmp_path, shard_rows=20)
    reader = ActivationStore(tmp_path, verify=verify)
    np.testing.assert_array_equal(reader[:], old)  # every shard read once
    write_array_store(new, tmp_path, shard_rows=20, overwrite=True)  # same sizes
    for read in (
        lambda: reader[:],
        lambda: reader[5],
        lambda: reader[[1, 50]],
        lambda: next(reader.iter_batches(10)),
        lambda: reader.units(),
    ):
        with pytest.raises(StoreChangedError, match="overwritten"):
            read()
    np.testing.assert_array_equal(ActivationStore(tmp_path)[:], new)


def test_a_reader_raises_when_the_store_is_removed(tmp_path):
    X = np.ones((10, 2), np.float32)
    write_array_store(X, tmp_path, shard_rows=5)
    reader = ActivationStore(tmp_path)
    for p in tmp_path.iterdir():
        p.unlink()
    with pytest.raises(StoreChangedError):
        reader[:]


def test_a_resume_does_not_disturb_a_reader(tmp_path):
    # a rerun of the same call rewrites the manifest, same generation
    X = np.arange(40, dtype=np.float32).reshape(20, 2)
    write_array_store(X, tmp_path, shard_rows=5)
    reader = ActivationStore(tmp_path)
    write_array_store(X, tmp_path, shard_rows=5)
    np.testing.assert_array_equal(reader[:], X)


# ------------------------------------------------------------- item 8: repair
def _flip_a_byte(file):
    data = bytearray(file.read_bytes())
    data[-3] ^= 0xFF
    file.write_bytes(bytes(data))


@pytest.mark.parametrize("role", ["shard-00001.npy", "shard-00001.units.jsonl"])
def test_a_rerun_repairs_a_corrupted_shard(
    tmp_path, fake_activations, fake_texts, files_of, role
):
    ref = extract_to_store(
        fake_activations(), fake_texts, tmp_path / "ref", shard_rows=25
    )
    path = tmp_path / "bad"
    extract_to_store(fake_activations(), fake_texts, path, shard_rows=25)
    _flip_a_byte(path / role)
    with pytest.raises(StoreCorruptedError, match="Rerun"):
        ActivationStore(path).verify_all()
    with pytest.warns(RuntimeWarning, match="fails its checksum.*Rewriting shards 1"):
        store = extract_to_store(fake_activations(), fake_texts, path, shard_rows=25)
    store.verify_all()
    assert files_of(path) == files_of(ref.path)


def test_a_rerun_repairs_a_corrupted_array_store(tmp_path):
    X = np.random.default_rng(1).normal(size=(50, 3)).astype(np.float32)
    write_array_store(X, tmp_path, shard_rows=20)
    _flip_a_byte(tmp_path / "shard-00000.npy")
    with pytest.raises(StoreCorruptedError):
        ActivationStore(tmp_path)[:]
    with pytest.warns(RuntimeWarning, match="Rewriting shards 0 to 2"):
        store = write_array_store(X, tmp_path, shard_rows=20)
    np.testing.assert_array_equal(store[:], X)

"""Atomic writes keep the permissions a plain write would give."""

import os
import stat

import pytest

from skconcepts.utils._files import write_atomic


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_write_atomic_follows_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        plain = tmp_path / "plain.txt"
        plain.write_text("x")
        atomic = write_atomic(
            tmp_path / "atomic.txt", lambda tmp: open(tmp, "w").close()
        )
    finally:
        os.umask(old)
    mode = stat.S_IMODE(atomic.stat().st_mode)
    assert mode == stat.S_IMODE(plain.stat().st_mode) == 0o666 & ~umask
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.txt", "plain.txt"]


def test_write_atomic_leaves_nothing_when_the_write_fails(tmp_path):
    def fail(tmp):
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        write_atomic(tmp_path / "a.txt", fail)
    assert list(tmp_path.iterdir()) == []

"""Output folders and files: writability checked before the work, atomic writes."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["check_out_folder", "write_atomic"]


def check_out_folder(out, flag="--out"):
    """Create ``out`` and check that files can be written in it (before the work).

    Raises
    ------
    ValueError
        If ``out`` is a file, cannot be created or is not writable.

    Examples
    --------
    >>> import tempfile
    >>> from skconcepts.utils._files import check_out_folder
    >>> check_out_folder(tempfile.mkdtemp()).is_dir()
    True
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"{flag} {str(out)!r} is a file; pass a folder.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as exc:
        raise ValueError(
            f"{flag} {str(out)!r} cannot be written ({exc.strerror or exc}); pass "
            "a folder you can write to."
        ) from None
    return out


def _umask():
    mask = os.umask(0)  # reading the umask means setting it; put it back at once
    os.umask(mask)
    return mask


def write_atomic(path, write):
    """Call ``write(tmp)`` on a temporary file in ``path``'s folder, then rename it.

    An interrupt leaves the previous file (or none), never a half-written one.
    The file gets the permissions a plain ``open(path, "w")`` would give
    (``0o666`` less the umask), not the private ``0o600`` of a temporary file.

    Examples
    --------
    >>> import tempfile
    >>> from pathlib import Path
    >>> from skconcepts.utils._files import write_atomic
    >>> path = Path(tempfile.mkdtemp()) / "a.txt"
    >>> write_atomic(path, lambda tmp: Path(tmp).write_text("hi")).read_text()
    'hi'
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path

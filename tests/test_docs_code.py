"""Every Python code block of the docs and the README runs, verbatim.

One test per page (the id is the file): the page's ``.. code-block:: python``
blocks (``>>>`` blocks run as doctests), or the README's ```` ```python ````
blocks, run in order in one namespace, in a temporary working directory. A
page is self-contained: it defines what it uses.

A block that cannot run here is marked visibly, right before it (blank lines
between are allowed), and the marker is printed as the reason of a skip:

* reST: ``.. skip-run: <reason>`` (an RST comment: not shown on the page) —
  only for what genuinely cannot run on a CPU-only machine (a GPU);
* reST: ``.. run-if-installed: <module>`` runs the block when ``<module>``
  imports and skips it otherwise (an optional package, e.g. interpreto);
* README: ``<!-- skip-run: <reason> -->`` (an HTML comment).

A marker without a reason, or not followed by a Python block, is an error.
"""

import doctest
import importlib.util
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
#: generated or built trees, not written by hand
EXCLUDED = ("_build", "generated", "auto_examples", "_templates")

_RST_DIRECTIVE = re.compile(r"^(\s*)\.\. code-block::\s*(\S+)\s*$")
_RST_MARKER = re.compile(r"^\s*\.\. (skip-run|run-if-installed):(.*)$")
_MD_FENCE = re.compile(r"^```(\S*)\s*$")
_MD_MARKER = re.compile(r"^\s*<!--\s*(skip-run):(.*?)-->\s*$")


@dataclass
class Block:
    """One runnable block of a page."""

    code: str
    line: int  # 1-based line of the first code line
    doctest: bool = False
    skip: str = ""  # reason, when the block is skipped
    requires: str = ""  # module that must import for the block to run


def _marker(kind, value, where):
    value = value.strip()
    if not value:
        raise ValueError(f"{where}: the '{kind}' marker needs a reason (or a module)")
    return (kind, value)


def _apply(marker, block):
    if marker is not None:
        kind, value = marker
        if kind == "skip-run":
            block.skip = value
        else:
            block.requires = value
    return block


def rst_blocks(text, name="<rst>"):
    """The Python blocks of a reST text, with their markers."""
    lines = text.splitlines()
    blocks, marker, i = [], None, 0
    while i < len(lines):
        line = lines[i]
        found = _RST_MARKER.match(line)
        directive = _RST_DIRECTIVE.match(line)
        if found:
            marker = _marker(found.group(1), found.group(2), f"{name}:{i + 1}")
            i += 1
            continue
        if directive:
            indent, language = len(directive.group(1)), directive.group(2)
            j = i + 1
            # the directive's options (":caption: ...") and the blank line
            while j < len(lines) and lines[j].strip().startswith(":"):
                j += 1
            body = []
            while j < len(lines) and (
                not lines[j].strip() or len(lines[j]) - len(lines[j].lstrip()) > indent
            ):
                body.append(lines[j])
                j += 1
            first = next((k for k, b in enumerate(body) if b.strip()), 0)
            code = textwrap.dedent("\n".join(body)).strip("\n") + "\n"
            if language in ("python", "pycon"):
                blocks.append(
                    _apply(
                        marker,
                        Block(code, i + 2 + first + (j - i - 1 - len(body))),
                    )
                )
            elif marker is not None:
                raise ValueError(
                    f"{name}:{i + 1}: a run marker precedes a "
                    f"'{language}' block, not a Python one"
                )
            marker = None
            i = j
            continue
        if line.strip().startswith(">>>"):
            j = i
            while j < len(lines) and lines[j].strip():
                j += 1
            code = textwrap.dedent("\n".join(lines[i:j])) + "\n"
            blocks.append(_apply(marker, Block(code, i + 1, doctest=True)))
            marker = None
            i = j
            continue
        if line.strip() and marker is not None:
            raise ValueError(
                f"{name}:{i + 1}: a run marker must come right before a Python block"
            )
        i += 1
    if marker is not None:
        raise ValueError(f"{name}: a run marker at the end of the file")
    return blocks


def markdown_blocks(text, name="<md>"):
    """The ```python blocks of a Markdown text, with their markers."""
    lines = text.splitlines()
    blocks, marker, i = [], None, 0
    while i < len(lines):
        found = _MD_MARKER.match(lines[i])
        fence = _MD_FENCE.match(lines[i])
        if found:
            marker = _marker(found.group(1), found.group(2), f"{name}:{i + 1}")
        elif fence:
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            if fence.group(1) in ("python", "py"):
                code = "\n".join(lines[i + 1 : j]) + "\n"
                blocks.append(_apply(marker, Block(code, i + 2)))
            elif marker is not None:
                raise ValueError(
                    f"{name}:{i + 1}: a skip-run marker precedes a "
                    f"'{fence.group(1)}' block, not a Python one"
                )
            marker = None
            i = j
        elif lines[i].strip() and marker is not None:
            raise ValueError(
                f"{name}:{i + 1}: a skip-run marker must come right before a "
                "Python block"
            )
        i += 1
    return blocks


def pages():
    """(id, path) of every page with at least one Python block."""
    found = []
    for path in sorted(DOCS.rglob("*.rst")):
        if any(part in EXCLUDED for part in path.relative_to(DOCS).parts):
            continue
        if rst_blocks(path.read_text(encoding="utf-8"), str(path)):
            found.append(path)
    found.append(ROOT / "README.md")
    return [pytest.param(p, id=str(p.relative_to(ROOT))) for p in found]


def blocks_of(path):
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".md":
        return markdown_blocks(text, str(path))
    return rst_blocks(text, str(path))


def run_blocks(blocks, name):
    """Run ``blocks`` in order in one namespace; return the skip reasons."""
    namespace = {"__name__": "__docs__"}
    skipped = []
    for block in blocks:
        where = f"{name}, line {block.line}"
        if block.skip:
            skipped.append(f"{where}: {block.skip}")
            continue
        if block.requires and importlib.util.find_spec(block.requires) is None:
            skipped.append(f"{where}: needs {block.requires}, not installed")
            continue
        if block.doctest:
            test = doctest.DocTestParser().get_doctest(
                block.code, namespace, where, name, block.line - 1
            )
            runner = doctest.DocTestRunner(
                optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE
            )
            runner.run(test, clear_globs=False)
            if runner.failures:
                raise AssertionError(f"{where}: {runner.failures} doctest failure(s)")
            continue
        exec(compile(block.code, f"<{where}>", "exec"), namespace)
    return skipped


@pytest.mark.parametrize("path", pages())
def test_page_code_runs(path, tmp_path, monkeypatch):
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(tmp_path)
    blocks = blocks_of(path)
    assert blocks, f"{path} has no Python block"
    skipped = run_blocks(blocks, str(path.relative_to(ROOT)))
    if skipped:
        # the blocks that ran passed; say which ones did not run, and why
        pytest.skip("; ".join(skipped))


# ------------------------------------------------------------- the extraction
RST = """\
Title
=====

.. code-block:: python
   :caption: first

   a = 1
   if a:
       b = 2

.. code-block:: bash

   echo no

.. skip-run: needs a GPU

.. code-block:: python

   raise RuntimeError("never")

.. run-if-installed: a_module_that_does_not_exist

.. code-block:: python

   import a_module_that_does_not_exist

>>> b + 1
3
"""


def test_rst_blocks_are_extracted_with_their_markers():
    blocks = rst_blocks(RST)
    assert [b.code for b in blocks] == [
        "a = 1\nif a:\n    b = 2\n",
        'raise RuntimeError("never")\n',
        "import a_module_that_does_not_exist\n",
        ">>> b + 1\n3\n",
    ]
    assert [b.line for b in blocks] == [7, 19, 25, 27]
    assert blocks[1].skip == "needs a GPU"
    assert blocks[2].requires == "a_module_that_does_not_exist"
    assert blocks[3].doctest
    skipped = run_blocks(blocks, "page")
    assert skipped == [
        "page, line 19: needs a GPU",
        "page, line 25: needs a_module_that_does_not_exist, not installed",
    ]


def test_a_failing_block_fails_the_page():
    with pytest.raises(ZeroDivisionError):
        run_blocks(rst_blocks(".. code-block:: python\n\n   1 / 0\n"), "page")
    with pytest.raises(AssertionError, match="doctest failure"):
        run_blocks(rst_blocks(">>> 1 + 1\n3\n"), "page")


def test_markers_need_a_reason_and_a_python_block():
    with pytest.raises(ValueError, match="needs a reason"):
        rst_blocks(".. skip-run:\n\n.. code-block:: python\n\n   x = 1\n")
    with pytest.raises(ValueError, match="not a Python one"):
        rst_blocks(".. skip-run: gpu\n\n.. code-block:: bash\n\n   ls\n")
    with pytest.raises(ValueError, match="right before"):
        rst_blocks(".. skip-run: gpu\n\nSome text.\n\n.. code-block:: python\n\n   x\n")
    with pytest.raises(ValueError, match="right before"):
        markdown_blocks("<!-- skip-run: gpu -->\ntext\n```python\nx = 1\n```\n")


def test_markdown_blocks_and_their_marker():
    text = "# T\n\n```bash\nls\n```\n\n<!-- skip-run: gpu -->\n```python\nx = 1\n```\n"
    text += "\n```python\ny = 2\n```\n"
    blocks = markdown_blocks(text)
    assert [(b.code, b.line, b.skip) for b in blocks] == [
        ("x = 1\n", 9, "gpu"),
        ("y = 2\n", 13, ""),
    ]


def test_every_docs_page_is_collected():
    ids = [p.id for p in pages()]
    assert "README.md" in ids
    assert "docs/quickstart.rst" in ids
    assert not any("auto_examples" in i or "generated" in i for i in ids)

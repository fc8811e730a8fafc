"""Tests of the ``skconcepts`` command line (skconcepts.cli, python -m skconcepts).

The work behind the commands is tested here through ``main``; the demo's steps in
``test_demo.py``, ``read_texts`` in ``test_datasets.py``, ``PooledConcepts`` in
``test_pooling.py``, ``linear_concept_importance`` in
``test_attribution_linear.py`` and the method registry in
``utils/test_discovery.py``.
"""

import ast
import html
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest

from skconcepts import cli
from skconcepts import io as skio
from skconcepts.cli import main
from skconcepts.interpret import concept_labels


def run(argv, capsys):
    """Run ``main(argv)``; return (status, stdout, stderr)."""
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


# ------------------------------------------------------------- the module
def test_cli_only_parses_and_dispatches():
    source = Path(cli.__file__).read_text(encoding="utf-8")
    assert len(source.splitlines()) < 400
    tree = ast.parse(source)
    classes = [n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)]
    assert classes == ["CommandError", "_Parser"]  # no estimator in the CLI
    fits = [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and node.attr in {"fit", "fit_transform", "partial_fit", "transform"}
    ]
    assert not fits, f"cli.py runs estimators itself (lines {fits})"
    top_imports = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            top_imports |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            top_imports.add(node.module.split(".")[0])
    assert top_imports <= {"__future__", "argparse", "importlib", "sys", "warnings",
                           "pathlib"}  # fmt: skip


def test_help_does_not_import_torch():
    code = (
        "import sys, contextlib, io\n"
        "from skconcepts.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try: main(['--help'])\n"
        "    except SystemExit: pass\n"
        "print('torch' in sys.modules, 'transformers' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert proc.stdout.split() == ["False", "False"], proc.stderr


def test_lazy_names_are_the_command_modules():
    from skconcepts import _commands, _demo

    assert cli.run_demo is _demo.run_demo
    assert cli.build_pipeline is _commands.build_pipeline
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        cli.nope  # noqa: B018


@pytest.mark.parametrize(
    "old, new",
    [
        ("read_texts", "skconcepts.datasets.read_texts"),
        ("linear_concept_importance", "skconcepts.linear_concept_importance"),
        ("method_class", "skconcepts._commands.method_class"),
    ],
)
def test_deprecated_aliases_warn_and_point_to_the_new_home(old, new):
    import importlib

    module, name = new.rsplit(".", 1)
    with pytest.warns(FutureWarning, match=f"skconcepts.cli.{old} is deprecated"):
        value = getattr(cli, old)
    assert value is getattr(importlib.import_module(module), name)


def test_fit_accepts_every_spelling_of_a_method():
    from skconcepts._commands import method_class

    assert method_class("Semi-NMF").__name__ == "SemiNMFConcepts"
    assert method_class("topk_sae").__name__ == "TopKSAEConcepts"
    assert method_class("PCAConcepts").__name__ == "PCAConcepts"
    with pytest.raises(ValueError, match=r"--method 'nmff' is not a known method"):
        method_class("nmff")


def test_deprecated_method_names_lists_every_concept_class():
    from skconcepts import concepts

    with pytest.warns(FutureWarning, match="concept_methods"):
        names = cli.method_names()
    others = {"ProbeConcepts", "NeuronConcepts"}  # supervised, baseline: no --method
    assert sorted(names.values()) == sorted(set(concepts.__all__) - others)
    assert names["seminmf"] == "SemiNMFConcepts" and names["topksae"] == (
        "TopKSAEConcepts"
    )


# ---------------------------------------------------------------- bad input
@pytest.fixture(scope="module")
def corpus_csv(tmp_path_factory, demo_corpus):
    path = tmp_path_factory.mktemp("corpus") / "texts.csv"
    pd.DataFrame({"sentence": demo_corpus[0][:24], "n": range(24)}).to_csv(
        path, index=False
    )
    return path


def _fit_argv(texts, out, *extra):
    return [
        "fit", "--texts", str(texts), "--column", "sentence", "--layer", "1",
        "--method", "pca", "--n-concepts", "3", "--granularity", "word",
        "--out", str(out), "-q", *extra,
    ]  # fmt: skip


@pytest.mark.parametrize(
    "change, message",
    [
        ({"--texts": "missing.csv"}, r"--texts '.*missing\.csv': no such file"),
        ({"--method": "nmff"}, r"--method 'nmff' is not a known method; .*'seminmf'"),
        ({"--layer": "9"}, r"(?i)split.?point.*9|9.*out of range"),
        ({"--column": "body"}, r"has no column 'body'; its columns are \['sentence'"),
        ({"--n-concepts": "0"}, r"--n-concepts 0 must be an integer >= 1"),
        ({"--granularity": "page"}, r"argument --granularity: invalid choice"),
        ({"--model": "no/such/folder"}, r"--model 'no/such/folder': no such folder"),
    ],
)
def test_bad_input_exits_2_with_one_line(change, message, corpus_csv, tmp_path, capsys):
    argv = _fit_argv(corpus_csv, tmp_path / "out")
    for flag, value in change.items():
        if flag in argv:
            argv[argv.index(flag) + 1] = value
        else:
            argv += [flag, value]
    status, out, err = run(argv, capsys)
    assert status == 2
    assert err.count("\n") == 1 and err.startswith("skconcepts: error: "), err
    assert re.search(message, err), err
    assert not (tmp_path / "out" / "pipeline.skops").exists()


@pytest.mark.parametrize(
    "content, name", [("\n  \n", "empty.txt"), ("sentence\n", "empty.csv")]
)
def test_empty_corpus_exits_2(content, name, tmp_path, capsys):
    (tmp_path / name).write_text(content)
    argv = _fit_argv(tmp_path / name, tmp_path / "o")
    if name.endswith(".txt"):
        del argv[argv.index("--column") : argv.index("--column") + 2]
    status, _, err = run(argv, capsys)
    assert status == 2
    assert "holds no text (empty corpus)" in err


def test_column_with_a_txt_file_exits_2(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("x\n")
    argv = _fit_argv(tmp_path / "a.txt", tmp_path / "o")
    status, _, err = run(argv, capsys)
    assert status == 2
    assert re.search(r"--texts '.*a\.txt' is a \.txt file .*'sentence'", err), err


def test_interpret_needs_a_fit_folder(corpus_csv, tmp_path, capsys):
    argv = ["interpret", str(tmp_path), "--texts", str(corpus_csv)]
    argv += ["--column", "sentence"]
    status, _, err = run(argv, capsys)
    assert status == 2
    assert "holds no pipeline.skops" in err


def test_python_dash_m_reports_bad_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "skconcepts", "interpret", str(tmp_path),
         "--texts", str(tmp_path / "nope.txt")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"skconcepts: error: --texts {str(tmp_path / 'nope.txt')!r}: no such file; "
        "pass a .txt, .csv, .tsv or .jsonl file."
    ]


# ------------------------------------------------------ fit, then interpret
def test_fit_then_interpret_round_trip(corpus_csv, demo_corpus, tmp_path, capsys):
    from skconcepts import TopKInputs

    model_dir = tmp_path / "model"
    status, out, _ = run(_fit_argv(corpus_csv, model_dir), capsys)
    assert status == 0
    assert "fitted PCAConcepts(n_concepts=3) on 24 texts" in out
    assert not (model_dir / "pipeline.joblib").exists()  # no pickle
    pipe = skio.load(model_dir)
    assert [name for name, _ in pipe.steps] == ["activations", "concepts"]
    assert pipe[0].split_point == 1 and pipe[0].granularity == "word"
    summary = json.loads((model_dir / "summary.json").read_text())
    assert summary["n_texts"] == 24 and summary["method"] == "PCAConcepts"
    assert 0 < summary["reconstruction_r2"] <= 1
    doc = (model_dir / "report.html").read_text()
    assert all(f'id="concept{j}"' in doc for j in range(3))

    new_texts = demo_corpus[0][100:110]
    (tmp_path / "new.txt").write_text("\n".join(new_texts) + "\n")
    res = tmp_path / "res"
    argv = ["interpret", str(model_dir), "--texts", str(tmp_path / "new.txt"),
            "-k", "4", "--out", str(res), "-q"]  # fmt: skip
    status, out, _ = run(argv, capsys)
    assert status == 0
    assert "top 4 units per concept in 10 texts:" in out
    # concepts titled by their distinctive words on these texts
    for j, label in enumerate(concept_labels(pipe, new_texts)):
        title = f"concept{j} ({label})" if label else f"concept{j}"
        assert f"  {title}: " in out

    # the CSVs agree with the saved pipeline applied directly
    units = pipe[0].units(new_texts)
    acts = pd.read_csv(res / "concept_activations.csv", keep_default_na=False)
    assert acts[["sample", "start", "end"]].equals(units[["sample", "start", "end"]])
    C = acts[["concept0", "concept1", "concept2"]].to_numpy()
    np.testing.assert_allclose(C, pipe.transform(new_texts), rtol=1e-4, atol=1e-5)
    top = pd.read_csv(res / "top_inputs.csv", keep_default_na=False)
    expected = TopKInputs(k=4).interpret(pipe, new_texts, as_frame=True)
    assert top["text"].tolist() == expected["text"].tolist()
    np.testing.assert_allclose(top["activation"], expected["activation"], rtol=1e-5)
    per_text = pd.read_csv(res / "text_concepts.csv")
    assert per_text["text"].tolist() == new_texts
    np.testing.assert_allclose(
        per_text[["concept0", "concept1", "concept2"]].to_numpy(),
        pd.DataFrame(C).groupby(units["sample"]).max().to_numpy(),
        rtol=1e-6,
    )
    assert (res / "report.html").is_file()


def test_saved_pipeline_does_not_force_progress_bars(corpus_csv, tmp_path, capsys):
    """Bars on for the command (no -q), progress=None in the saved pipeline."""
    argv = [a for a in _fit_argv(corpus_csv, tmp_path / "m") if a != "-q"]
    argv[argv.index("--method") + 1] = "nmf"
    status, out, err = run(argv, capsys)
    assert status == 0
    assert "SplitPointActivations" in err  # the bar was forced on
    pipe = skio.load(tmp_path / "m")
    steps = [s for _, s in pipe.steps if "progress" in s.get_params(deep=False)]
    assert steps and all(s.progress is None for s in steps)
    # the printed titles are the distinctive-word labels of the report
    labels = re.findall(r"^  concept\d: (.*)$", out, flags=re.M)
    assert len(labels) == 3 and all(1 <= len(lb.split(", ")) <= 3 for lb in labels)
    doc = (tmp_path / "m" / "report.html").read_text()
    assert all(
        f'<span class="skc-label">{html.escape(lb)}</span>' in doc for lb in labels
    )


def test_fit_nmf_adds_a_non_negative_step(corpus_csv, tmp_path, capsys):
    argv = _fit_argv(corpus_csv, tmp_path / "m")
    argv[argv.index("--method") + 1] = "nmf"
    argv[argv.index("--granularity") + 1] = "sample"
    assert run(argv, capsys)[0] == 0
    pipe = skio.load(tmp_path / "m")
    assert [name for name, _ in pipe.steps] == [
        "activations", "nonnegative", "concepts",
    ]  # fmt: skip
    assert pipe["nonnegative"].strategy == "split"


# ---------------------------------------------------------------------- demo
def test_demo_on_a_reduced_corpus(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    argv = ["demo", "--out", str(out_dir), "--max-texts", "60", "-q"]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    assert "60 texts (5 topics x 2 sentiments)" in out
    accuracies = [float(a) for a in re.findall(r"held-out accuracy ([\d.]+)", out)]
    # two bottlenecks and the classifier of the sentence embedding (step 5)
    assert len(accuracies) == 3 and all(0 <= a <= 1 for a in accuracies)
    assert (out_dir / "classifier_importance.csv").is_file()
    k = int(re.search(r"SemiNMFConcepts\s+best n_concepts=(\d+)", out).group(1))
    doc = (out_dir / "report.html").read_text(encoding="utf-8")
    # every concept of the SemiNMF bottleneck, with highlighted example texts
    for j in range(k):
        section = doc.split(f'id="concept{j}"')[1].split("</section>")[0]
        assert section.count('class="skc-example"') == 3
        assert "background-color: rgba(255, 127, 14" in section
    assert f'id="concept{k}"' not in doc
    assert 'src="data:image/png;base64,' in doc  # the importance heatmap
    assert "http" not in doc and "<script" not in doc
    importance = pd.read_csv(out_dir / "importance.csv", index_col=0)
    assert importance.shape == (2, k)
    assert list(importance.index) == ["negative", "positive"]
    assert (out_dir / "importance.png").is_file()
    assert (out_dir / "report_kmeans.html").is_file()


# ------------------------------------------ CLI errors (issue 12, item 15)
def _one_line_exit_2(status, err, pattern):
    assert status == 2, err
    assert err.count("\n") == 1 and err.startswith("skconcepts: error: "), err
    assert re.search(pattern, err), err


@pytest.fixture(scope="module")
def fit_dir(corpus_csv, tmp_path_factory):
    out = tmp_path_factory.mktemp("fit") / "fitted"
    assert main(_fit_argv(corpus_csv, out)) == 0
    return out


def _copy_fit(fit_dir, tmp_path):
    import shutil

    return Path(shutil.copytree(fit_dir, tmp_path / "copy"))


def _interpret(folder, corpus_csv, *extra):
    return ["interpret", str(folder), "--texts", str(corpus_csv),
            "--column", "sentence", "-q", *extra]  # fmt: skip


def _no_fit(*args, **kwargs):
    raise AssertionError("the model ran before the argument check")


def test_device_gpu_exits_2(corpus_csv, tmp_path, capsys):
    argv = _fit_argv(corpus_csv, tmp_path / "o", "--device", "gpu")
    _one_line_exit_2(*run(argv, capsys)[::2], r"device='gpu' is not a device")


@pytest.mark.parametrize("kind", ["file", "read-only", "proc"])
def test_fit_out_not_writable_exits_2_before_the_work(
    kind, corpus_csv, tmp_path, capsys, monkeypatch
):
    from skconcepts import SplitPointActivations

    if kind == "file":
        out = tmp_path / "a-file"
        out.write_text("x")
    elif kind == "read-only":
        if os.geteuid() == 0:
            pytest.skip("root writes in read-only folders (see the 'proc' case)")
        out = tmp_path / "ro"
        out.mkdir(mode=0o555)
    else:
        if not Path("/proc/self").is_dir():
            pytest.skip("needs Linux /proc")
        out = Path("/proc/self/skconcepts-out")
    monkeypatch.setattr(SplitPointActivations, "fit_transform", _no_fit)
    status, _, err = run(_fit_argv(corpus_csv, out), capsys)
    _one_line_exit_2(status, err, r"--out .*(is a file|cannot be written)")


def test_interpret_out_not_writable_exits_2(fit_dir, corpus_csv, tmp_path, capsys):
    (tmp_path / "f").write_text("x")
    argv = _interpret(fit_dir, corpus_csv, "--out", str(tmp_path / "f"))
    _one_line_exit_2(*run(argv, capsys)[::2], r"--out .* is a file")


def _damage(kind, data):
    return {"random": os.urandom(2000), "truncated": data[: len(data) // 2],
            "empty": b""}[kind]  # fmt: skip


@pytest.mark.parametrize("kind", ["random", "truncated", "empty"])
@pytest.mark.parametrize("checksum", ["stale", "updated"])
def test_interpret_a_damaged_pipeline_file_exits_2(
    kind, checksum, fit_dir, corpus_csv, tmp_path, capsys
):
    import hashlib

    folder = _copy_fit(fit_dir, tmp_path)
    path = folder / "pipeline.skops"
    path.write_bytes(_damage(kind, path.read_bytes()))
    if checksum == "updated":  # past the checksum: the parser sees the damage
        manifest = json.loads((folder / "manifest.json").read_text())
        manifest["sha256"]["pipeline.skops"] = hashlib.sha256(
            path.read_bytes()
        ).hexdigest()
        (folder / "manifest.json").write_text(json.dumps(manifest))
    pattern = "sha256" if checksum == "stale" else "is not a skops file"
    _one_line_exit_2(*run(_interpret(folder, corpus_csv), capsys)[::2], pattern)


@pytest.mark.parametrize("kind", ["random", "truncated", "empty"])
def test_interpret_a_damaged_trusted_pickle_exits_2(
    kind, fit_dir, corpus_csv, tmp_path, capsys
):
    folder = tmp_path / "old"
    folder.mkdir()
    joblib.dump(skio.load(fit_dir), folder / "pipeline.joblib")
    path = folder / "pipeline.joblib"
    path.write_bytes(_damage(kind, path.read_bytes()))
    argv = _interpret(folder, corpus_csv, "--trust-pickle")
    _one_line_exit_2(*run(argv, capsys)[::2], r"pipeline\.joblib' cannot be loaded")


def test_interpret_an_old_joblib_folder_needs_trust_pickle(
    fit_dir, corpus_csv, tmp_path, capsys
):
    folder = tmp_path / "old"
    folder.mkdir()
    joblib.dump(skio.load(fit_dir), folder / "pipeline.joblib")
    status, _, err = run(_interpret(folder, corpus_csv), capsys)
    _one_line_exit_2(status, err, r"runs code from the file; pass --trust-pickle")
    status, out, _ = run(_interpret(folder, corpus_csv, "--trust-pickle"), capsys)
    assert status == 0 and "top 5 units per concept" in out


def test_trust_pickle_help_says_it_runs_code(capsys):
    with pytest.raises(SystemExit):
        main(["interpret", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--trust-pickle" in help_text and "RUNS CODE" in help_text


class _Crafted:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


@pytest.mark.parametrize("name", ["pipeline.joblib", "pipeline.skops"])
def test_interpret_refuses_a_crafted_pickle_without_running_it(
    name, corpus_csv, tmp_path, capsys
):
    import hashlib
    import pickle

    target = tmp_path / "created-by-the-file"
    folder = tmp_path / "crafted"
    folder.mkdir()
    payload = pickle.dumps(_Crafted(str(target)))
    (folder / name).write_bytes(payload)
    manifest = {"format": skio.FORMAT,
                "sha256": {name: hashlib.sha256(payload).hexdigest()}}  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest))
    status, _, err = run(_interpret(folder, corpus_csv), capsys)
    _one_line_exit_2(status, err, r"(--trust-pickle|not a skops file)")
    assert not target.exists()
    pickle.loads(payload).close()  # control: the bytes do create the file
    assert target.exists()


@pytest.mark.parametrize("kind", ["dict", "estimator"])
@pytest.mark.parametrize("fmt", ["skops", "joblib"])
def test_interpret_a_file_that_is_not_a_pipeline_exits_2(
    kind, fmt, fit_dir, corpus_csv, tmp_path, capsys
):
    obj = {"a": 1} if kind == "dict" else skio.load(fit_dir)["concepts"]
    folder = tmp_path / "x"
    folder.mkdir()
    if fmt == "skops":
        skio.save(obj, folder)
        argv = _interpret(folder, corpus_csv)
    else:
        joblib.dump(obj, folder / "pipeline.joblib")
        argv = _interpret(folder, corpus_csv, "--trust-pickle")
    pattern = r"holds a (dict|PCAConcepts), not a"
    _one_line_exit_2(*run(argv, capsys)[::2], pattern)


def test_fit_with_a_model_folder_holding_only_a_config_exits_2(
    corpus_csv, tmp_path, capsys
):
    from skconcepts.datasets import embedded_model_path

    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_bytes(
        (Path(embedded_model_path()) / "config.json").read_bytes()
    )
    argv = _fit_argv(corpus_csv, tmp_path / "o", "--model", str(model))
    _one_line_exit_2(*run(argv, capsys)[::2], r"--model")


@pytest.mark.parametrize("fmt", ["skops", "joblib"])
def test_interpret_after_the_model_folder_moved_exits_2(
    fmt, corpus_csv, tmp_path, capsys
):
    import shutil

    from skconcepts.datasets import embedded_model_path

    model = shutil.copytree(embedded_model_path(), tmp_path / "model")
    out = tmp_path / "fitted"
    assert run(_fit_argv(corpus_csv, out, "--model", str(model)), capsys)[0] == 0
    extra = ()
    if fmt == "joblib":
        joblib.dump(skio.load(out), out / "pipeline.joblib")
        (out / "pipeline.skops").unlink()
        extra = ("--trust-pickle",)
    shutil.move(model, tmp_path / "elsewhere")
    argv = _interpret(out, corpus_csv, *extra)
    _one_line_exit_2(*run(argv, capsys)[::2], r"(does not exist|cannot be loaded)")


def test_interpret_piped_into_head_ends_quietly(fit_dir, tmp_path):
    texts = tmp_path / "many.txt"
    texts.write_text("".join(f"Text number {i} is here.\n" for i in range(1500)))
    command = (
        f"{sys.executable} -m skconcepts interpret {fit_dir} --texts {texts} "
        "--show 1500 -q | head -1"
    )
    proc = subprocess.run(
        ["bash", "-c", command], capture_output=True, text=True, timeout=600
    )
    assert proc.stdout.startswith("top 5 units per concept")
    assert proc.stderr == ""


def test_an_interrupted_fit_leaves_no_half_written_file(
    corpus_csv, tmp_path, capsys, monkeypatch
):
    def half_then_interrupt(self, path, *args, **kwargs):
        Path(path).write_text("concept,te")
        raise KeyboardInterrupt

    monkeypatch.setattr(pd.DataFrame, "to_csv", half_then_interrupt)
    out = tmp_path / "o"
    status, _, err = run(_fit_argv(corpus_csv, out), capsys)
    assert status == 130 and "interrupted" in err
    assert (out / "pipeline.skops").is_file()  # written before, whole
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "pipeline.skops", "report.html",
    ]  # fmt: skip


def test_demo_out_a_file_exits_2_before_the_work(tmp_path, capsys, monkeypatch):
    from skconcepts import _demo

    monkeypatch.setattr(_demo, "load_demo_corpus", _no_fit)
    (tmp_path / "f").write_text("x")
    argv = ["demo", "--out", str(tmp_path / "f"), "-q"]
    _one_line_exit_2(*run(argv, capsys)[::2], r"--out .* is a file")


def test_fit_an_sae_writes_the_skops_format_that_interpret_reads(
    corpus_csv, tmp_path, capsys
):
    folder = tmp_path / "sae"
    folder.mkdir()
    (folder / "pipeline.joblib").write_bytes(b"an older fit's pickle")
    argv = _fit_argv(corpus_csv, folder)
    argv[argv.index("--method") + 1] = "topksae"
    argv[argv.index("--n-concepts") + 1] = "8"
    status, out, _ = run(argv, capsys)
    assert status == 0 and "pickle" not in out
    assert (folder / "pipeline.skops").is_file()
    assert not (folder / "pipeline.joblib").exists()  # no pickle, none left
    fitted = skio.load(folder)
    assert type(fitted["concepts"]).__name__ == "TopKSAEConcepts"
    status, _, err = run(_interpret(folder, corpus_csv), capsys)  # no flag
    assert status == 0, err


# ---------------------------------------------------- --labeler (issue 15, item 7)
@pytest.fixture(scope="module")
def labeler_dir(tmp_path_factory):
    from skconcepts.utils._testing import make_tiny_model

    model, tokenizer = make_tiny_model("gpt2", head="causal_lm")
    folder = tmp_path_factory.mktemp("labeler")
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.filterwarnings("ignore::skconcepts.exceptions.TruncationWarning")
def test_fit_and_interpret_with_a_local_labeler(
    corpus_csv, labeler_dir, tmp_path, capsys
):
    import html

    from skconcepts.labels import ConceptLabeler

    out = tmp_path / "m"
    status, printed, err = run(
        _fit_argv(corpus_csv, out, "--labeler", str(labeler_dir)), capsys
    )
    assert status == 0, err
    labels = json.loads((out / "summary.json").read_text())["labels"]
    assert len(labels) == 3 and all(isinstance(x, str) and x for x in labels)
    # the labels are the labeler's on the saved top units (its cache answers)
    top = pd.read_csv(out / "top_inputs.csv", keep_default_na=False)
    units = {j: {} for j in range(3)}
    for c, t, a in zip(top["concept"], top["text"], top["activation"]):
        units[int(c)].setdefault(t, a)
    labeler = ConceptLabeler(labeler_dir, progress=False)
    assert labeler.label(units) == labels and labeler.n_generated_ == 0
    doc = (out / "report.html").read_text()
    assert all(html.escape(label) in doc for label in labels)
    for j, label in enumerate(labels):
        assert f"concept{j}: {label}" in printed

    res = tmp_path / "res"
    argv = _interpret(out, corpus_csv, "--labeler", str(labeler_dir), "--out", str(res))
    status, printed, err = run(argv, capsys)
    assert status == 0, err
    top = pd.read_csv(res / "top_inputs.csv", keep_default_na=False)
    units = {j: {} for j in range(3)}
    for c, t, a in zip(top["concept"], top["text"], top["activation"]):
        units[int(c)].setdefault(t, a)
    labels = labeler.label(units)  # from the cache: the labels interpret printed
    assert labeler.n_generated_ == 0
    lines = [ln for ln in printed.splitlines() if ln.startswith("  concept")]
    for j, label in enumerate(labels):
        assert label in lines[j] and lines[j].startswith(f"  concept{j} ")
    doc = (res / "report.html").read_text()
    assert all(html.escape(label) in doc for label in labels)


def test_a_labeler_that_is_not_a_causal_lm_exits_2(corpus_csv, tmp_path, capsys):
    from skconcepts.datasets import embedded_model_path

    out = tmp_path / "m"
    argv = _fit_argv(corpus_csv, out, "--labeler", str(embedded_model_path()))
    status, _, err = run(argv, capsys)
    assert status == 2
    assert "--labeler" in err and "is not a causal language model" in err
    assert not out.exists()  # refused before the work
    status, _, err = run(_fit_argv(corpus_csv, out, "--labeler", "gpt2"), capsys)
    assert status == 2 and "--labeler gpt2: model='gpt2' is not a folder" in err

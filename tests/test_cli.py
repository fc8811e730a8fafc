"""Tests of the ``skconcepts`` command line (skconcepts.cli, python -m skconcepts)."""

import io
import json
import re
import subprocess
import sys

import joblib
import numpy as np
import pandas as pd
import pytest

from skconcepts import cli
from skconcepts.cli import linear_concept_importance, main, read_texts


def run(argv, capsys):
    """Run ``main(argv)``; return (status, stdout, stderr)."""
    status = main(argv)
    out, err = capsys.readouterr()
    return status, out, err


# ---------------------------------------------------------------- read_texts
def test_read_texts_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first text\n\n  second text  \n")
    assert read_texts(tmp_path / "a.txt") == ["first text", "second text"]
    pd.DataFrame({"id": [1, 2, 3], "body": ["x, with comma", None, "z"]}).to_csv(
        tmp_path / "a.csv", index=False
    )
    assert read_texts(tmp_path / "a.csv", "body") == ["x, with comma", "z"]
    (tmp_path / "a.jsonl").write_text('{"text": "j1"}\n{"text": "j2"}\n')
    assert read_texts(tmp_path / "a.jsonl") == ["j1", "j2"]
    (tmp_path / "a.tsv").write_text("text\tn\nt1\t1\n")
    assert read_texts(tmp_path / "a.tsv") == ["t1"]


def test_method_names_cover_every_concept_class():
    from skconcepts import concepts

    names = cli.method_names()
    assert sorted(names.values()) == sorted(concepts.__all__)
    assert cli.method_class("Semi-NMF").__name__ == "SemiNMFConcepts"
    assert cli.method_class("topk_sae").__name__ == "TopKSAEConcepts"


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
    assert not (tmp_path / "out" / "pipeline.joblib").exists()


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


def test_interpret_needs_a_fit_folder(corpus_csv, tmp_path, capsys):
    argv = ["interpret", str(tmp_path), "--texts", str(corpus_csv)]
    argv += ["--column", "sentence"]
    status, _, err = run(argv, capsys)
    assert status == 2
    assert "holds no pipeline.joblib" in err


def test_python_dash_m_reports_bad_input(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "skconcepts", "interpret", str(tmp_path),
         "--texts", str(tmp_path / "nope.txt")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"skconcepts: error: --texts {str(tmp_path / 'nope.txt')!r}: no such file; "
        "pass a .txt, .csv or .jsonl file."
    ]


# ------------------------------------------------------ fit, then interpret
def test_fit_then_interpret_round_trip(corpus_csv, demo_corpus, tmp_path, capsys):
    from skconcepts import TopKInputs

    model_dir = tmp_path / "model"
    status, out, _ = run(_fit_argv(corpus_csv, model_dir), capsys)
    assert status == 0
    assert "fitted PCAConcepts(n_concepts=3) on 24 texts" in out
    pipe = joblib.load(model_dir / "pipeline.joblib")
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


def test_fit_nmf_adds_a_non_negative_step(corpus_csv, tmp_path, capsys):
    argv = _fit_argv(corpus_csv, tmp_path / "m")
    argv[argv.index("--method") + 1] = "nmf"
    argv[argv.index("--granularity") + 1] = "sample"
    assert run(argv, capsys)[0] == 0
    pipe = joblib.load(tmp_path / "m" / "pipeline.joblib")
    assert [name for name, _ in pipe.steps] == [
        "activations", "nonnegative", "concepts",
    ]  # fmt: skip
    assert pipe["nonnegative"].strategy == "split"


# ------------------------------------------------------------- attribution
@pytest.mark.parametrize("n_classes", [2, 3])
def test_linear_concept_importance_is_gradient_x_input(n_classes):
    import torch
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    C = rng.random((60, 4))
    y = rng.integers(0, n_classes, 60)
    clf = LogisticRegression().fit(C, y)
    imp = linear_concept_importance(clf, C, y)
    assert imp.shape == (n_classes, 4)
    assert list(imp.index) == [str(c) for c in range(n_classes)]

    # reference: autograd of each class's log-odds w.r.t. the concepts
    Ct = torch.tensor(C, requires_grad=True)
    W = torch.tensor(clf.coef_)
    b = torch.tensor(clf.intercept_)
    z = Ct @ W.T + b  # (n, 1) binary, (n, n_classes) multiclass
    logits = torch.cat([-z, z], dim=1) if n_classes == 2 else z
    for j in range(n_classes):
        (grad,) = torch.autograd.grad(logits[:, j].sum(), Ct, retain_graph=True)
        expected = (grad * Ct).detach().numpy()[y == j].mean(axis=0)
        np.testing.assert_allclose(imp.iloc[j].to_numpy(), expected, rtol=1e-10)


# ---------------------------------------------------------------------- demo
def test_demo_on_a_reduced_corpus(tmp_path, capsys):
    out_dir = tmp_path / "demo"
    argv = ["demo", "--out", str(out_dir), "--max-texts", "60", "-q"]
    status, out, err = run(argv, capsys)
    assert status == 0, err
    assert "60 texts (5 topics x 2 sentiments)" in out
    accuracies = [float(a) for a in re.findall(r"held-out accuracy ([\d.]+)", out)]
    assert len(accuracies) == 2 and all(0 <= a <= 1 for a in accuracies)
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


def test_run_demo_returns_results(tmp_path):
    stream = io.StringIO()
    results = cli.run_demo(
        tmp_path, max_texts=40, n_concepts_grid=(2, 3), progress=False, stream=stream
    )
    assert set(results["accuracy"]) == {"SemiNMFConcepts", "KMeansConcepts"}
    assert results["n_concepts"]["SemiNMFConcepts"] in (2, 3)
    k = results["n_concepts"]["SemiNMFConcepts"]
    assert len(results["top_words"]["SemiNMFConcepts"]) == k
    assert results["report"] == tmp_path / "report.html"
    assert "[5/5] report:" in stream.getvalue()


def test_read_texts_rejects_column_with_txt(tmp_path):
    (tmp_path / "a.txt").write_text("x\n")
    with pytest.raises(cli.CommandError, match="--column 'body' applies to .csv"):
        read_texts(tmp_path / "a.txt", "body")
    (tmp_path / "a.docx").write_text("x\n")
    with pytest.raises(cli.CommandError, match="unknown file type '.docx'"):
        read_texts(tmp_path / "a.docx")

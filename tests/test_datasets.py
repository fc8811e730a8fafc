"""Tests of skconcepts.datasets: read_texts (the demo corpus and model are
exercised by the conftest fixtures and the doctests)."""

import re

import pandas as pd
import pytest

from skconcepts.datasets import read_texts


def test_read_texts_formats(tmp_path):
    (tmp_path / "a.txt").write_text("first text\n\n  second text  \n")
    assert read_texts(tmp_path / "a.txt") == ["first text", "second text"]
    pd.DataFrame({"id": [1, 2, 3], "body": ["x, with comma", None, "z"]}).to_csv(
        tmp_path / "a.csv", index=False
    )
    assert read_texts(tmp_path / "a.csv", "body") == ["x, with comma", "z"]
    assert read_texts(str(tmp_path / "a.csv"), column="body")[0] == "x, with comma"
    (tmp_path / "a.jsonl").write_text('{"text": "j1"}\n{"text": "j2"}\n')
    assert read_texts(tmp_path / "a.jsonl") == ["j1", "j2"]
    (tmp_path / "a.tsv").write_text("text\tn\nt1\t1\n")
    assert read_texts(tmp_path / "a.tsv") == ["t1"]
    (tmp_path / "UPPER.TXT").write_text("x\n")
    assert read_texts(tmp_path / "UPPER.TXT") == ["x"]


def test_read_texts_missing_file(tmp_path):
    path = tmp_path / "missing.csv"
    with pytest.raises(FileNotFoundError) as info:
        read_texts(path)
    assert str(info.value) == (
        f"{str(path)!r}: no such file; pass a .txt, .csv, .tsv or .jsonl file."
    )


@pytest.mark.parametrize(
    "name, content, column, message",
    [
        ("a.txt", "x\n", "body", r"is a \.txt file .* a column \('body'\) was given"),
        ("a.docx", "x\n", None, r"unknown file type '\.docx'"),
        ("a", "x\n", None, r"unknown file type '\(none\)'"),
        ("a.csv", "sentence\nx\n", "body", r"has no column 'body'; its columns are "
         r"\['sentence'\]"),
        ("a.csv", "sentence\n", "sentence", r"holds no text \(empty corpus\)"),
        ("a.csv", "", None, r"holds no text \(empty corpus\)"),
        ("a.txt", "\n  \n", None, r"holds no text \(empty corpus\)"),
        ("a.jsonl", "{not json\n", None, r"could not be parsed as \.jsonl"),
    ],
)  # fmt: skip
def test_read_texts_bad_files_raise_value_error(
    tmp_path, name, content, column, message
):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as info:
        read_texts(path, column)
    assert str(info.value).startswith(repr(str(path)))  # the CLI prefixes --texts
    assert re.search(message, str(info.value))

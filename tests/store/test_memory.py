"""Tests of the one memory-budget check (skconcepts/store/_memory.py)."""

import re

import pytest

import skconcepts.store
import skconcepts.store._memory as memory_module
from skconcepts import exceptions
from skconcepts.store import (
    MEMORY_FRACTION,
    StoreTooLargeError,
    check_memory_budget,
    format_bytes,
    memory_budget,
    streaming_estimator_names,
)
from skconcepts.utils.discovery import all_estimators


def test_error_names_the_bytes_needed_the_budget_and_the_fix():
    with pytest.raises(StoreTooLargeError) as info:
        check_memory_budget(
            3 * 2**20,
            2**20,
            what="PCAConcepts.transform of the store",
            fix="Write it to disk with transform_to_store.",
        )
    assert str(info.value) == (
        "PCAConcepts.transform of the store needs 3145728 bytes (3.0 MiB), but the "
        "budget is 1048576 bytes (1.0 MiB, max_bytes=1048576). Write it to disk "
        "with transform_to_store."
    )
    assert isinstance(info.value, MemoryError)
    assert isinstance(info.value, exceptions.SkconceptsError)


def test_fitting_arrays_pass_and_the_budget_is_returned():
    assert check_memory_budget(100, 100, what="x", fix="y") == 100
    assert check_memory_budget(0, 0, what="x", fix="y") == 0
    with pytest.raises(StoreTooLargeError, match="x needs 101 bytes"):
        check_memory_budget(101, 100, what="x", fix="y")


def test_default_budget_is_a_fraction_of_the_available_memory(monkeypatch):
    monkeypatch.setattr(memory_module, "available_memory", lambda: 4000)
    assert MEMORY_FRACTION == 0.25
    assert memory_budget() == (1000, "25% of the available RAM")
    assert check_memory_budget(1000, what="x", fix="y") == 1000
    with pytest.raises(
        StoreTooLargeError,
        match=re.escape("but the budget is 1000 bytes (1000 B, 25% of the avail"),
    ):
        check_memory_budget(1001, None, what="x", fix="y")


def test_a_callable_fix_is_built_only_when_raising():
    calls = []

    def fix():
        calls.append(1)
        return "Stream it."

    check_memory_budget(10, 10, what="x", fix=fix)
    assert calls == []
    with pytest.raises(StoreTooLargeError, match=r"\. Stream it\.$"):
        check_memory_budget(11, 10, what="x", fix=fix)
    assert calls == [1]


def test_format_bytes():
    assert format_bytes(0) == "0 B"
    assert format_bytes(1023) == "1023 B"
    assert format_bytes(1024) == "1.0 KiB"
    assert format_bytes(5 * 2**30) == "5.0 GiB"
    assert format_bytes(2**50) == "1024.0 TiB"


def test_streaming_estimators_come_from_the_estimators():
    names = streaming_estimator_names()
    expected = [
        n
        for n, cls in all_estimators(type_filter="concept")
        if hasattr(cls, "partial_fit")
    ]
    assert names == expected
    assert {"PCAConcepts", "KMeansConcepts", "NMFConcepts", "SAEConcepts"} <= set(names)
    assert "ICAConcepts" not in names and "SVDConcepts" not in names


def test_deprecated_and_moved_names():
    with pytest.warns(FutureWarning, match="streaming_estimator_names"):
        old = skconcepts.store.STREAMING_ESTIMATORS
    assert old == tuple(streaming_estimator_names())
    assert skconcepts.store.StoreTooLargeError is exceptions.StoreTooLargeError
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        skconcepts.store.nope  # noqa: B018


def test_a_budget_read_once_serves_several_checks(monkeypatch):
    free = iter([4000, 400])
    monkeypatch.setattr(memory_module, "available_memory", lambda: next(free))
    once = memory_budget()
    for n_bytes in (100, 500, 1000):  # the available RAM is read only once
        assert check_memory_budget(n_bytes, budget=once, what="x", fix="y") == 1000
    with pytest.raises(StoreTooLargeError, match="25% of the available RAM"):
        check_memory_budget(1001, budget=once, what="x", fix="y")
    with pytest.raises(ValueError, match="not both"):
        check_memory_budget(1, 10, budget=once, what="x", fix="y")

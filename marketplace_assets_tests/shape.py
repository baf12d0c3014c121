"""Compare the shape of an answer with a reference sample: same keys, same nesting, same types."""

from __future__ import annotations

from typing import Any


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"  # the samples write 25 where the service may send 25.0
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    return "object" if isinstance(value, dict) else type(value).__name__


def shape_differences(
    sample: Any, actual: Any, path: str = "$", *, ignore: frozenset[str] = frozenset()
) -> list[str]:
    """Every place where `actual` is not shaped like `sample`.

    Objects must have the sample's keys (extra keys in `actual` are reported too); a list's items are
    each compared with the sample's first item; a null in the sample matches any value (the sample does
    not say the type). Keys in `ignore` (by name, anywhere) are skipped.
    """
    if sample is None:
        return []
    if _kind(sample) != _kind(actual):
        return [f"{path}: sample has {_kind(sample)}, answer has {_kind(actual)}"]
    problems: list[str] = []
    if isinstance(sample, dict):
        missing = sorted(set(sample) - set(actual) - ignore)
        extra = sorted(set(actual) - set(sample) - ignore)
        if missing:
            problems.append(f"{path}: missing keys {missing}")
        if extra:
            problems.append(f"{path}: keys not in the sample {extra}")
        for key in sorted(set(sample) & set(actual) - ignore):
            problems += shape_differences(sample[key], actual[key], f"{path}.{key}", ignore=ignore)
    elif isinstance(sample, list) and sample:
        for index, item in enumerate(actual):
            problems += shape_differences(sample[0], item, f"{path}[{index}]", ignore=ignore)
    return problems


def assert_same_shape(sample: Any, actual: Any, *, ignore: frozenset[str] = frozenset()) -> None:
    problems = shape_differences(sample, actual, ignore=ignore)
    assert not problems, "answer differs from the reference sample:\n" + "\n".join(problems[:20])

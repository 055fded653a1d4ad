"""Reading YAML configuration files and wording their problems for an operator.

A problem is a YAML path and a message (`plazas[3].directions.entry.lanes[1].type:
must be ETC, MTC or MIXED`), so the operator can find the spot without reading code.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel
from pydantic_core import ErrorDetails

from tollmon.errors import ConfigError

Loc = tuple[str | int, ...]
Problem = tuple[Loc, str]

# Ids become Kafka keys and Prometheus label values, so they stay short and plain.
ID_PATTERN = r"^[A-Za-z0-9_.-]{1,32}$"

_BOUNDS = {
    "greater_than": ("gt", ">"),
    "greater_than_equal": ("ge", ">="),
    "less_than": ("lt", "<"),
    "less_than_equal": ("le", "<="),
}
_WHAT = {
    "missing": "required",
    "string_too_short": "must not be empty",
    "too_short": "must not be empty",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "dict_type": "must be a mapping",
    "tuple_type": "must be a list",
    "list_type": "must be a list",
    "float_type": "must be a number",
    "float_parsing": "must be a number",
    "finite_number": "must be a finite number",
    "int_type": "must be a whole number",
    "int_parsing": "must be a whole number",
    "int_from_float": "must be a whole number",
}


def read_yaml(path: str | os.PathLike[str]) -> tuple[object, list[str]]:
    """The file's data and its repeated keys; ConfigError if it cannot be read or parsed."""
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(source, [f"cannot read the file: {exc}"]) from exc
    loader = _DuplicateKeyLoader(text)
    try:
        return loader.get_single_data(), loader.duplicates
    except yaml.YAMLError as exc:
        raise ConfigError(source, [_syntax_problem(exc)]) from exc
    finally:
        loader.dispose()


# libyaml's parser (when PyYAML has it) reads a 10,000-plaza network several times faster.
if TYPE_CHECKING:
    _SafeLoader = yaml.SafeLoader
else:
    _SafeLoader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _DuplicateKeyLoader(_SafeLoader):
    """A safe loader that records repeated mapping keys, which YAML would let silently win."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.duplicates: list[str] = []

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag.endswith(":merge"):
                continue
            key = self.construct_object(key_node)
            if key in seen:
                mark = key_node.start_mark
                self.duplicates.append(
                    f"line {mark.line + 1}, column {mark.column + 1}: duplicate key {key!r}"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _syntax_problem(exc: yaml.YAMLError) -> str:
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        what = exc.problem or exc.context or "invalid YAML"
        return f"line {mark.line + 1}, column {mark.column + 1}: YAML syntax error: {what}"
    return f"YAML syntax error: {exc}"


def yaml_path(loc: Loc) -> str:
    """`('plazas', 3, 'id')` as `plazas[3].id`."""
    path = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in loc)
    return path.removeprefix(".") or "(top level)"


def operator_message(error: ErrorDetails, known_keys: Collection[str] = ()) -> str:
    """Pydantic's wording turned into an operator's: `must be ETC, MTC or MIXED`.

    `known_keys` are offered as corrections for a key the model refuses.
    """
    kind, ctx = error["type"], error.get("ctx") or {}
    message = _WHAT.get(kind, error["msg"])
    if kind in _BOUNDS:
        key, symbol = _BOUNDS[kind]
        bound = ctx[key]
        message = f"must be {symbol} {bound:g}" if isinstance(bound, int | float) else message
    elif kind == "literal_error":
        message = "must be " + str(ctx["expected"]).replace("'", "")
    elif kind == "value_error":
        message = str(ctx.get("error", message))
    elif kind == "string_type":
        # Unquoted 01 to 07 are YAML 1.1 octal numbers, a classic trap with lane ids.
        numeric = isinstance(error["input"], int | float)
        message = 'must be a string; quote it ("01")' if numeric else "must be a string"
    elif kind == "string_pattern_mismatch":
        pattern = ctx.get("pattern")
        is_id = pattern == ID_PATTERN
        message = "must be 1 to 32 letters, digits, '_', '.' or '-'" if is_id else message
    elif kind == "extra_forbidden":
        key = str(error["loc"][-1]) if error["loc"] else ""
        message = "unknown key" + _did_you_mean(key, known_keys)
    return message


def _did_you_mean(key: str, known: Collection[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.8)
    return f"; did you mean {close[0]!r}?" if close else ""


def misspelt_keys(raw: Mapping[Any, Any], model: type[BaseModel], loc: Loc) -> list[Problem]:
    """Keys the model does not know but that are a letter or two from one it does.

    Where extra keys are allowed, `detector:` for `detectors:` would otherwise pass
    silently and leave the approach without its detector.
    """
    problems: list[Problem] = []
    for key in raw:
        if isinstance(key, str) and key not in model.model_fields:
            hint = _did_you_mean(key, model.model_fields)
            if hint:
                problems.append(((*loc, key), "unknown key" + hint))
    return problems


def mapping_items(value: object) -> list[tuple[int, Mapping[Any, Any]]]:
    """The (index, item) pairs of a YAML list whose items are mappings; broken ones skipped."""
    if not isinstance(value, list | tuple):
        return []
    return [(i, item) for i, item in enumerate(value) if isinstance(item, Mapping)]


def duplicate(value: object, loc: Loc, seen: dict[str, Loc], what: str) -> list[Problem]:
    """A problem if this id was seen before; otherwise remember where it first appeared."""
    if not isinstance(value, str):
        return []
    if value in seen:
        return [(loc, f"duplicate {what} {value!r} (first at {yaml_path(seen[value])})")]
    seen[value] = loc
    return []

"""Turn pydantic validation errors into located, readable problems."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from imgpipe.spec.yamlsource import Located, Path_


def field_path(loc: Path_) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(document)"


def _model_in(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _model_in(arg)
        if found:
            return found
    return None


def _fields_at(model: type[BaseModel], loc: Path_) -> list[str]:
    """Field names allowed at `loc` (used for "did you mean" on unknown keys)."""
    current: Any = model
    for part in loc:
        if isinstance(current, type) and issubclass(current, BaseModel):
            info = current.model_fields.get(str(part))
            if info is None:
                return []
            current = info.annotation
            continue
        origin = typing.get_origin(current)
        if origin in (dict, tuple, list) or isinstance(current, types.UnionType):
            args = [a for a in typing.get_args(current) if a is not Ellipsis]
            current = _model_in(args[-1]) if args else None
            if current is None:
                return []
            continue
        return []
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def suggestion(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problems_from_validation(
    exc: ValidationError, doc: Located, model: type[BaseModel], prefix: Path_ = ()
) -> list[str]:
    problems: list[tuple[int, str]] = []
    for err in exc.errors():
        loc, wrong_member = _strip_union_tags(err["loc"], err.get("input"))
        if wrong_member:
            continue
        full = (*prefix, *loc)
        if err["type"] == "extra_forbidden":
            pos = doc.position(full, key=True)
            hint = suggestion(str(loc[-1]), _fields_at(model, loc[:-1]))
            problems.append((pos.line, f"{pos}: {field_path(full)}: unknown field{hint}"))
            continue
        pos = doc.position(full)
        msg = err["msg"].removeprefix("Value error, ")
        found = "" if err["type"] == "missing" else f" (found {_short(err.get('input'))})"
        problems.append((pos.line, f"{pos}: {field_path(full)}: {msg}{found}"))
    return [text for _line, text in sorted(problems, key=lambda p: p[0])]


_SCALAR_TAGS = {"str": str, "int": int, "float": float, "bool": bool}


def _strip_union_tags(loc: tuple[Any, ...], value: Any) -> tuple[Path_, bool]:
    """pydantic puts the union member it tried into loc ('str', 'RoleRef', ...).
    Drop those segments, and drop the error entirely when it is about a member
    whose kind does not match the input (a mapping never was meant as a 'str')."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and (part in _SCALAR_TAGS or part[:1].isupper() or "[" in part):
            if part in _SCALAR_TAGS and isinstance(value, dict | list):
                return tuple(out), True
            if part[:1].isupper() and not isinstance(value, dict) and part == loc[-1]:
                return tuple(out), True
            continue
        out.append(part)
    return tuple(out), False

"""Turn pydantic validation errors into located, readable problems."""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from imgpipe.spec.yamlsource import Located, Path_


def field_path(loc: Path_) -> str:
    """`provision.roles[0].vars`; a key that is not a plain word is quoted: `targets['a b']`."""
    out = ""
    for part in loc:
        if isinstance(part, str) and part and all(c.isalnum() or c in "_-" for c in part):
            out += f".{part}" if out else part
        else:
            out += f"[{part!r}]" if isinstance(part, str) else f"[{part}]"
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


def short_repr(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def problems_from_validation(
    exc: ValidationError, doc: Located, model: type[BaseModel], prefix: Path_ = ()
) -> list[str]:
    problems: list[tuple[int, str]] = []
    seen: set[Path_] = set()
    for err in exc.errors():
        loc, wrong_member = _strip_union_tags(model, err["loc"], err.get("input"))
        if wrong_member:
            continue
        full = (*prefix, *loc)
        if len(loc) < len(err["loc"]):  # one problem per place, not one per union member tried
            if full in seen:
                continue
            seen.add(full)
        if err["type"] == "extra_forbidden":
            pos = doc.position(full, key=True)
            hint = suggestion(str(loc[-1]), _fields_at(model, loc[:-1])) if loc else ""
            problems.append((pos.line, f"{pos}: {field_path(full)}: unknown field{hint}"))
            continue
        pos = doc.position(full)
        msg = err["msg"].removeprefix("Value error, ")
        found = "" if err["type"] == "missing" else f" (found {short_repr(err.get('input'))})"
        problems.append((pos.line, f"{pos}: {field_path(full)}: {msg}{found}"))
    return [text for _line, text in sorted(problems, key=lambda p: p[0])]


def _members(annotation: Any) -> list[Any]:
    """The non-None members of a union annotation; [annotation] for anything else."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _tag(member: Any) -> str:
    return member.__name__ if isinstance(member, type) else str(member)


def _inner(annotation: Any, part: str | int) -> Any:
    """The annotation one loc step below `annotation` (None when unknown)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        info = annotation.model_fields.get(str(part))
        return info.annotation if info else None
    origin = typing.get_origin(annotation)
    args = [a for a in typing.get_args(annotation) if a is not Ellipsis]
    if origin is dict and len(args) == 2:
        return args[1]
    if origin in (tuple, list) and args:
        return args[0] if len(args) == 1 or not isinstance(part, int) else args[min(part, len(args) - 1)]
    return None


def _strip_union_tags(model: type[BaseModel], loc: tuple[Any, ...], value: Any) -> tuple[Path_, bool]:
    """pydantic puts the union member it tried into loc ('str', 'RoleRef', 'int' ...).
    Walk the model's annotations beside loc so that only those segments are dropped (a
    variable or key named 'str' or 'Foo' stays), and drop the error entirely when it is
    about a member whose kind does not match the input (a mapping never was meant as a 'str')."""
    out: list[str | int] = []
    current: Any = model
    for i, part in enumerate(loc):
        members = _members(current) if current is not None else [None]
        if len(members) > 1 and isinstance(part, str):
            member = next((m for m in members if _tag(m) == part), None)
            if member is not None or "[" in part:
                if member in (str, int, float, bool) and isinstance(value, dict | list):
                    return tuple(out), True
                is_model = isinstance(member, type) and issubclass(member, BaseModel)
                if is_model and not isinstance(value, dict) and i == len(loc) - 1:
                    return tuple(out), True
                current = member
                continue
        current = members[0] if len(members) == 1 else None
        out.append(part)
        current = _inner(current, part) if current is not None else None
    return tuple(out), False

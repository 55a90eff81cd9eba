"""The JSON Schema of a spec, generated from the pydantic models (one source of
truth): each target is one of the installed builders' settings, each publish entry
one of the installed publishers' settings."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from imgpipe.builders import builder_class, builder_names
from imgpipe.spec.model import Spec


def _plugin_choices(defs: dict[str, Any], names: list[str], load: Callable[[str], Any]) -> dict[str, Any]:
    choices = []
    for name in names:
        settings = load(name).Settings.model_json_schema(ref_template="#/$defs/{model}", by_alias=True)
        defs.update(settings.pop("$defs", {}))
        title = settings.get("title", name)
        defs[title] = settings
        choices.append({"$ref": f"#/$defs/{title}"})
    return {"oneOf": choices} if len(choices) > 1 else choices[0]


def spec_json_schema() -> dict[str, Any]:
    from imgpipe.publish.base import publisher_class, publisher_names

    schema = Spec.model_json_schema()
    defs = schema.setdefault("$defs", {})
    props = schema["properties"]
    props["targets"]["additionalProperties"] = _plugin_choices(defs, builder_names(), builder_class)
    props["publish"]["additionalProperties"] = _plugin_choices(defs, publisher_names(), publisher_class)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "imgpipe image spec"
    return schema

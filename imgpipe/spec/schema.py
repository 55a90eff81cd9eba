"""The JSON Schema of a spec, generated from the pydantic models (one source of
truth): each target is one of the installed builders' settings."""

from __future__ import annotations

from typing import Any

from imgpipe.builders import builder_class, builder_names
from imgpipe.spec.model import Spec


def spec_json_schema() -> dict[str, Any]:
    schema = Spec.model_json_schema()
    defs = schema.setdefault("$defs", {})
    choices = []
    for name in builder_names():
        settings = builder_class(name).Settings.model_json_schema(ref_template="#/$defs/{model}")
        defs.update(settings.pop("$defs", {}))
        title = settings.get("title", name)
        defs[title] = settings
        choices.append({"$ref": f"#/$defs/{title}"})
    targets = schema["properties"]["targets"]
    targets["additionalProperties"] = {"oneOf": choices} if len(choices) > 1 else choices[0]
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "imgpipe image spec"
    return schema

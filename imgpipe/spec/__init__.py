"""The image spec: YAML with file:line positions -> validated pydantic model."""

from imgpipe.spec.load import load_spec
from imgpipe.spec.model import Spec

__all__ = ["Spec", "load_spec"]

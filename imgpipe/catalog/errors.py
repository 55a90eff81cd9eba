"""The catalog's one error: bad URL, unreachable database, a schema newer than this
imgpipe, a spec name another place owns. Its message never holds a password."""

from __future__ import annotations

from imgpipe.errors import SpecError


class CatalogError(SpecError):
    """The catalog can't be used as asked (exit code 2: fix the URL, the spec name or imgpipe)."""

"""The catalog: the queryable record of every bake (SQLite by default, PostgreSQL for a
team), behind a small API. Nothing outside this package opens a database session."""

from imgpipe.catalog.errors import CatalogError
from imgpipe.catalog.models import Status
from imgpipe.catalog.store import Catalog, open_catalog
from imgpipe.catalog.url import catalog_url, mask_url
from imgpipe.catalog.views import ArtifactView, BuildView, LeaseView, SpecView, TargetBuildView

__all__ = [
    "ArtifactView",
    "BuildView",
    "Catalog",
    "CatalogError",
    "LeaseView",
    "SpecView",
    "Status",
    "TargetBuildView",
    "catalog_url",
    "mask_url",
    "open_catalog",
]

"""The software bill of materials of an image: the Debian packages installed on the
build VM (from dpkg-query), written as a CycloneDX JSON SBOM beside the image, and read
back by `imgpipe diff`."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from imgpipe.errors import SpecError

if TYPE_CHECKING:
    from cyclonedx.model.component import Component
    from packageurl import PackageURL

# One tab-separated line per package. Status comes first: its abbreviation ends in a space
# ("ii ") that a last column would lose to line stripping. dpkg-query expands \t and \n itself,
# so the argv survives shlex.join for SSH; its `$` fields must reach dpkg-query unexpanded.
DPKG_QUERY: list[str] = [
    "dpkg-query",
    "--show",
    "--showformat",
    r"${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\t${source:Package}\t${source:Version}\n",
]

_PROPERTY = "imgpipe:deb:"  # namespace of our CycloneDX properties, as the property taxonomy asks


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    architecture: str
    source: str
    source_version: str

    @property
    def purl(self) -> str:
        return self.package_url().to_string()

    def package_url(self, namespace: str = "debian") -> PackageURL:
        """`pkg:deb/<namespace>/<name>@<version>?arch=<arch>`; the namespace is the vendor (debian...)."""
        from packageurl import PackageURL

        qualifiers = {"arch": self.architecture} if self.architecture else {}
        return PackageURL(
            type="deb", namespace=namespace, name=self.name, version=self.version, qualifiers=qualifiers
        )


def parse_dpkg_query(text: str) -> list[Package]:
    """Packages from DPKG_QUERY's output, sorted by name. Only installed packages count
    (status "ii", or "hi" for a held one): removed ones with config files left ("rc")
    and half-installed ones are not on the image in working order."""
    packages = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 6:
            raise ValueError(f"dpkg-query output line {number}: expected 6 tab-separated fields: {line!r}")
        status, name, version, arch, source, source_version = fields
        if status[1:2] != "i":
            continue
        packages.append(Package(name, version, arch, source or name, source_version or version))
    return sorted(packages, key=lambda p: (p.name, p.architecture))


def write_sbom(
    path: Path,
    packages: list[Package],
    *,
    image_name: str,
    spec_name: str,
    build_id: str,
    distro: str = "debian",
) -> str:
    """Write a CycloneDX 1.6 JSON SBOM of the image atomically; return its sha256 (hex).
    `distro` is the purl namespace of the packages (debian, ubuntu)."""
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.output import make_outputter
    from cyclonedx.schema import OutputFormat, SchemaVersion

    image = _image_component(image_name, spec_name, build_id)
    components = [_package_component(p, distro) for p in packages]
    bom = Bom(metadata=BomMetaData(component=image, tools=_tools()), components=components)
    bom.register_dependency(image, components)  # the image contains every package
    text = make_outputter(bom, OutputFormat.JSON, SchemaVersion.V1_6).output_as_string(indent=2)
    data = (text + "\n").encode()
    _write_atomically(path, data)
    return hashlib.sha256(data).hexdigest()


def _image_component(image_name: str, spec_name: str, build_id: str) -> Component:
    from cyclonedx.model import Property
    from cyclonedx.model.component import Component, ComponentType

    # operating-system: CycloneDX defines it as an OS "without regard to deployment model
    # (installed on physical hardware, virtual machine, image ...)", which a bootable disk
    # image is; container would claim OS-level virtualization, which it is not.
    return Component(
        name=image_name,
        version=build_id,
        type=ComponentType.OPERATING_SYSTEM,
        bom_ref=f"image:{image_name}@{build_id}",
        properties=[
            Property(name="imgpipe:spec", value=spec_name),
            Property(name="imgpipe:build_id", value=build_id),
        ],
    )


def _package_component(package: Package, distro: str) -> Component:
    from cyclonedx.model import Property
    from cyclonedx.model.component import Component, ComponentType

    purl = package.package_url(distro)
    return Component(
        name=package.name,
        version=package.version,
        type=ComponentType.LIBRARY,  # as syft and trivy classify OS packages
        purl=purl,
        bom_ref=purl.to_string(),
        properties=[
            Property(name=f"{_PROPERTY}architecture", value=package.architecture),
            Property(name=f"{_PROPERTY}source", value=package.source),
            Property(name=f"{_PROPERTY}source_version", value=package.source_version),
        ],
    )


def _tools() -> Any:
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import ToolRepository

    from imgpipe import __version__

    return ToolRepository(
        components=[Component(name="imgpipe", version=__version__, type=ComponentType.APPLICATION)]
    )


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the SBOM from other readers of the output
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_sbom(path: Path) -> dict[str, Package]:
    """The packages of a CycloneDX JSON SBOM by name (`name:arch` where several
    architectures of one package are installed). Raises SpecError (bad input) naming
    the file if it cannot be read or is not a CycloneDX SBOM."""
    from cyclonedx.model.bom import Bom

    try:
        doc = json.loads(path.read_text())
        if not isinstance(doc, dict) or doc.get("bomFormat") != "CycloneDX":
            raise ValueError("not a CycloneDX document (no bomFormat: CycloneDX)")
        bom = Bom.from_json(doc)  # type: ignore[attr-defined]
    except (OSError, UnicodeDecodeError) as exc:
        raise SpecError(f"{path}: cannot read the SBOM: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - the deserializer raises many kinds; all mean bad input
        raise SpecError(f"{path}: not a readable CycloneDX JSON SBOM: {exc}") from exc
    packages = [_package_of(c) for c in bom.components]
    counts = Counter(p.name for p in packages)
    return {p.name if counts[p.name] == 1 else f"{p.name}:{p.architecture}": p for p in packages}


def _package_of(component: Component) -> Package:
    """Our properties first; the purl for SBOMs from other tools (syft, trivy)."""
    props = {p.name: p.value for p in component.properties}
    qualifiers = component.purl.qualifiers if component.purl else {}
    version = component.version or ""
    arch = props.get(f"{_PROPERTY}architecture") or qualifiers.get("arch", "")  # type: ignore[union-attr]
    return Package(
        name=component.name,
        version=version,
        architecture=str(arch),
        source=props.get(f"{_PROPERTY}source") or component.name,
        source_version=props.get(f"{_PROPERTY}source_version") or version,
    )

"""The spec model: the single source of truth for what a spec may say.
Every field carries a description; builders add their own target settings."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from imgpipe.sources.distros import default_suite, get_suite, suite_names


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VarType(StrEnum):
    string = "string"
    integer = "integer"
    number = "number"
    boolean = "boolean"
    list = "list"
    map = "map"


class Validation(Strict):
    """Checks a variable's final value must pass; checked against the declared type by variables.py."""

    pattern: str | None = Field(
        None, description="Regular expression a string value must match in full (Python `re` syntax)."
    )
    min: int | float | None = Field(
        None, description="Smallest number allowed; for strings and lists, the smallest length."
    )
    max: int | float | None = Field(
        None, description="Largest number allowed; for strings and lists, the largest length."
    )
    choices: tuple[Any, ...] | None = Field(None, description="The only values allowed.", min_length=1)
    message: str | None = Field(
        None, description="Shown instead of the default message when a check fails.", min_length=1
    )

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except (re.error, RecursionError, OverflowError) as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from None
        return pattern

    @field_validator("min", "max", mode="before")
    @classmethod
    def _not_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("expected a number")
        return value


class Variable(Strict):
    type: VarType = Field(VarType.string, description="Type the value must have.")
    default: Any = Field(None, description="Value used when no other source gives one.")
    required: bool = Field(False, description="Fail unless a value is given.")
    description: str = Field("", description="What the variable is for.")
    sensitive: bool = Field(
        False,
        description="Keep the value out of logs, errors and manifests; usable in role vars only.",
    )
    validation: Validation = Field(
        default_factory=Validation, description="Checks the final value must pass."
    )


class Bootstrap(Strict):
    distro: Literal["debian"] = Field("debian", description="Distribution to bootstrap.")
    suite: str = Field(
        default_suite("debian"),
        description="Distribution release, one of the suites imgpipe knows (imgpipe.sources.distros): "
        f"{', '.join(suite_names('debian'))}. Default: the current stable release.",
        json_schema_extra={"enum": list(suite_names("debian"))},
    )
    packages: tuple[str, ...] = Field((), description="Extra packages baked into the base.")
    disk_gb: int = Field(4, ge=2, le=64, description="Virtual size of the base disk in GiB.")
    keep: tuple[Literal["docs", "man_pages", "locales"], ...] = Field(
        (),
        description="What the slim base keeps that it leaves out by default: docs (/usr/share/doc beyond "
        "copyright files, info pages), man_pages, locales (translations and locale sources beyond C and "
        "English). The base's dpkg path filters apply to the packages roles install too; a different "
        "`keep` is a different cached base.",
    )

    @field_validator("suite")
    @classmethod
    def _known_suite(cls, suite: str, info: ValidationInfo) -> str:
        get_suite(info.data.get("distro", "debian"), suite)  # UnknownSuite (a ValueError) lists the known
        return suite


class ImageSource(Strict):
    path: str | None = Field(None, description="Local qcow2 or raw image (never modified).")
    url: str | None = Field(None, description="http(s) URL of a qcow2 or raw image.")
    checksum: str | None = Field(
        None,
        pattern=r"^sha256:[0-9a-fA-F]{64}$",
        description="'sha256:<hex>' of the file at url; required with url.",
    )

    @model_validator(mode="after")
    def _one_location(self) -> ImageSource:
        if (self.path is None) == (self.url is None):
            raise ValueError("give exactly one of 'path' or 'url'")
        if self.url is not None and self.checksum is None:
            raise ValueError("'url' needs a 'checksum' of the form sha256:<hex>")
        return self


class Source(Strict):
    bootstrap: Bootstrap | None = Field(None, description="Build a Debian base with mmdebstrap.")
    image: ImageSource | None = Field(None, description="Start from an existing disk image.")
    parent: str | None = Field(
        None,
        description="Start from an image imgpipe built, found in the catalog: 'NAME@CHANNEL', 'NAME@BUILD' "
        "(a build id or a unique prefix) or 'NAME/TARGET@CHANNEL' when the parent spec has several "
        "targets of the kind needed. A libvirt target starts from the parent's image file, an AWS target "
        "from the parent's AMI in its region.",
    )

    @field_validator("parent")
    @classmethod
    def _parent_parses(cls, parent: str | None) -> str | None:
        if parent is not None:
            from imgpipe.lineage import parse_parent_ref

            parse_parent_ref(parent)  # ValueError with what is wrong
        return parent

    @model_validator(mode="after")
    def _one_kind(self) -> Source:
        given = [k for k in ("bootstrap", "image", "parent") if getattr(self, k) is not None]
        if len(given) > 1:
            raise ValueError(
                f"give exactly one of 'bootstrap', 'image' or 'parent', not {' and '.join(given)}"
            )
        return self


class RoleRef(Strict):
    role: str = Field(description="Role name, found on the roles path.")
    vars: dict[str, Any] = Field(default_factory=dict, description="Role variables (Ansible templates them).")


class AnsibleOptions(Strict):
    """What teams pass to ansible-playbook, honoured alike by `validate` and `bake`.
    Secrets come by file or environment variable, never on a command line."""

    config: str | None = Field(
        None,
        description="ansible.cfg, relative to the spec (default: ansible.cfg beside the spec, if any; "
        "never one from the working directory).",
    )
    tags: tuple[str, ...] = Field((), description="Run only tasks with these tags (--tags).")
    skip_tags: tuple[str, ...] = Field((), description="Skip tasks with these tags (--skip-tags).")
    verbosity: int = Field(0, ge=0, le=4, description="-v count in the Ansible log (0-4).")
    vault_password_file: str | None = Field(
        None, description="File holding the vault password, relative to the spec."
    )
    vault_password_env: str | None = Field(
        None,
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="Environment variable holding the vault password.",
    )
    extra_args: tuple[str, ...] = Field(
        (),
        description="More ansible-playbook options, e.g. [--diff, --forks=2] (no secrets: they are logged).",
    )

    @model_validator(mode="after")
    def _one_vault_source(self) -> AnsibleOptions:
        if self.vault_password_file and self.vault_password_env:
            raise ValueError("give one of 'vault_password_file' or 'vault_password_env', not both")
        return self


class Provision(Strict):
    roles: tuple[str | RoleRef, ...] = Field((), description="Roles applied in order.")
    playbooks: tuple[str, ...] = Field((), description="Playbooks run after the roles, relative to the spec.")
    roles_path: tuple[str, ...] = Field((), description="Extra role directories, relative to the spec.")
    requirements: str | None = Field(None, description="ansible-galaxy requirements file (local sources).")
    timeout_s: int | None = Field(None, ge=1, description="Abort provisioning after this many seconds.")
    ansible: AnsibleOptions = Field(default_factory=AnsibleOptions, description="ansible-playbook options.")

    def role_refs(self) -> list[RoleRef]:
        return [RoleRef(role=r) if isinstance(r, str) else r for r in self.roles]


class SealStep(StrEnum):
    cloud_init = "cloud_init"
    machine_id = "machine_id"
    ssh_host_keys = "ssh_host_keys"
    build_key = "build_key"
    hostname = "hostname"
    logs = "logs"
    shell_history = "shell_history"
    package_cache = "package_cache"
    dhcp_leases = "dhcp_leases"
    temp_files = "temp_files"
    trim = "trim"


class Seal(Strict):
    enabled: bool = Field(True, description="Generalize the machine before capture.")
    skip: tuple[SealStep, ...] = Field((), description="Seal steps to leave out.")


class BuiltinChecks(StrEnum):
    fail = "fail"
    warn = "warn"


class Verify(Strict):
    """Tests against a fresh boot of the captured image, before anything is published."""

    enabled: bool = Field(
        True, description="Boot the captured image and test it; false: the manifest says it is unverified."
    )
    testinfra: tuple[str, ...] = Field(
        (), description="pytest-testinfra files run against the fresh boot, relative to the spec."
    )
    playbooks: tuple[str, ...] = Field(
        (), description="Ansible playbooks (assert tasks) run against the fresh boot, relative to the spec."
    )
    timeout_s: int = Field(600, ge=10, description="Abort the image tests after this many seconds.")
    builtin_checks: BuiltinChecks = Field(
        BuiltinChecks.fail,
        description="What a failed built-in check (machine-id, host keys, build key, cloud-init, hostname, "
        "shell history) does: fail the target, or only warn and record it.",
    )


class Schedule(Strict):
    """When `imgpipe nightly` bakes the spec: due when one of the cron times fell between
    its last attempt and now, so a run late in the night still bakes a spec due at 03:00."""

    cron: str = Field(description="Cron expression (5 fields, e.g. '0 3 * * *'), read with croniter.")
    timezone: str = Field("UTC", description="IANA time zone the cron times are in (e.g. 'Europe/Berlin').")

    @field_validator("cron")
    @classmethod
    def _cron_parses(cls, cron: str) -> str:
        from croniter import croniter

        if len(cron.split()) != 5 or not croniter.is_valid(cron):
            raise ValueError(f"{cron!r} is not a 5-field cron expression (minute hour day month weekday)")
        try:  # valid, yet some never fire: 30 February; day 1 that is also the second Monday
            croniter(cron).get_next()
        except Exception:  # noqa: BLE001 - croniter's CroniterBadDateError and kin
            raise ValueError(f"{cron!r} never fires: no date matches it") from None
        return cron

    @field_validator("timezone")
    @classmethod
    def _zone_exists(cls, timezone: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(timezone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{timezone!r} is not an IANA time zone (e.g. 'UTC', 'Europe/Berlin')") from None
        return timezone


class Rebuild(Strict):
    """What makes `imgpipe nightly` rebuild, and when it gives up on a spec."""

    base_max_age_days: int = Field(
        7, ge=1, description="A bootstrapped base older than this is stale and rebuilt (as a new file)."
    )
    disable_after_failures: int = Field(
        5, ge=1, description="Consecutive failed nightly bakes after which the catalog disables the spec."
    )


class Channels(Strict):
    """Where a channel (`latest`, `stable`, ...) of this image is visible besides the catalog."""

    ssm_parameter: str = Field(
        "/images/{name}/{channel}",
        pattern=r"^/[A-Za-z0-9_./{}-]+$",
        description="SSM parameter holding a channel's AMI id, in each region of the build's AMIs; "
        "{name} is the spec's name, {channel} the channel's, {target} the target's (needed when "
        "several targets make AMIs).",
    )

    @field_validator("ssm_parameter")
    @classmethod
    def _known_fields(cls, template: str) -> str:
        try:
            template.format(name="n", channel="c", target="t")
        except (KeyError, IndexError, ValueError):
            raise ValueError(f"{template!r} may use only {{name}}, {{channel}} and {{target}}") from None
        return template


class Retention(Strict):
    """Which of this spec's builds `imgpipe prune` (and `imgpipe nightly`, after it bakes)
    removes. A build a channel points at, the newest succeeded build of each target, a parent
    of a kept build, an AMI in use in EC2 and anything tagged `imgpipe:keep=true` always stay."""

    keep: int = Field(
        5, ge=1, description="The newest succeeded builds always kept (besides the ones that must stay)."
    )
    max_age_days: int | None = Field(
        None,
        ge=0,
        description="A build older than this and not among the `keep` newest is removed; unset: any "
        "build beyond the `keep` newest is removed.",
    )
    deprecate_after_days: int | None = Field(
        None,
        ge=0,
        description="AMIs of builds older than this get an EC2 deprecation time; when set, an AMI is "
        "deleted only by a prune after the one that deprecated it (deprecate first, delete later).",
    )


class Spec(Strict):
    imgpipe: Literal[1] = Field(1, description="Spec format version.")
    name: str = Field(
        pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
        description="Image name: lower-case letters, digits, '.', '_', '-'.",
    )
    description: str = Field("", description="What the image is for.")
    variables: dict[str, Variable] = Field(default_factory=dict, description="Declared variables.")
    source: Source = Field(default_factory=Source, description="Where the build starts.")
    provision: Provision = Field(default_factory=Provision, description="What Ansible applies.")
    seal: Seal = Field(default_factory=Seal, description="How the machine is generalized.")
    verify: Verify = Field(default_factory=Verify, description="Image tests on a fresh boot of the image.")
    schedule: Schedule | None = Field(
        None, description="When `imgpipe nightly` bakes this spec; without one, every nightly run."
    )
    rebuild: Rebuild = Field(default_factory=Rebuild, description="Base staleness, failure limit (nightly).")
    channels: Channels = Field(
        default_factory=Channels, description="Where `imgpipe promote` makes channels visible (SSM path)."
    )
    retention: Retention | None = Field(
        None, description="Which old builds `imgpipe prune` removes; without one, prune keeps every build."
    )
    publish: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Named publish steps; each has a 'publisher', 'from' (a target) and its settings.",
    )
    targets: dict[str, dict[str, Any]] = Field(
        description="Named build targets; each has a 'builder' and that builder's settings.",
        min_length=1,
    )

    @model_validator(mode="after")
    def _names(self) -> Spec:
        for name in self.targets:
            if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"target name {name!r} must be letters, digits, '-' or '_'")
        return self

"""`provision.ansible`: the options teams pass to ansible-playbook (an ansible.cfg, tags,
verbosity, a vault password, extra arguments), turned into one set of environment
variables and arguments that `validate` and `bake` both use, so the two never disagree.

The config is the spec's own (ANSIBLE_CONFIG): never an ansible.cfg that happens to be in
the working directory. imgpipe's own settings (the pinned host key, its SSH options) are
environment variables, which beat any ansible.cfg. A vault password given by environment
variable is written to a 0600 file in a private directory that the caller removes."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgpipe.spec.load import LoadedSpec

DEFAULT_CONFIG = "ansible.cfg"


@dataclass(frozen=True)
class AnsibleInvocation:
    env: dict[str, str] = field(default_factory=dict)
    args: list[str] = field(default_factory=list)  # ansible-playbook options (never a secret)


def config_file(loaded: LoadedSpec) -> Path | None:
    """The spec's ansible.cfg: the one it names, else ansible.cfg beside it, else none."""
    named = loaded.spec.provision.ansible.config
    if named:
        return (loaded.directory / named).resolve()
    beside = loaded.directory / DEFAULT_CONFIG
    return beside.resolve() if beside.is_file() else None


def empty_config(private_dir: Path) -> Path:
    """An empty ansible.cfg: with no config of the spec's, none from the working directory
    or the home directory counts either (Ansible wants a .cfg name, so not /dev/null)."""
    private_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = private_dir / "ansible.cfg"
    path.write_text("# imgpipe: no ansible.cfg of the spec's\n")
    return path


def option_problems(loaded: LoadedSpec) -> list[str]:
    """Files `provision.ansible` names that are missing, and a vault variable that is unset."""
    opts = loaded.spec.provision.ansible
    problems = []
    for key in ("config", "vault_password_file"):
        name = getattr(opts, key)
        if name and not (loaded.directory / name).is_file():
            pos = loaded.doc.position(("provision", "ansible", key))
            problems.append(f"{pos}: provision.ansible.{key}: no such file {name}")
    if opts.vault_password_env and not os.environ.get(opts.vault_password_env):
        pos = loaded.doc.position(("provision", "ansible", "vault_password_env"))
        problems.append(
            f"{pos}: provision.ansible.vault_password_env: the environment variable "
            f"{opts.vault_password_env} is not set"
        )
    return problems


def invocation(loaded: LoadedSpec, private_dir: Path) -> AnsibleInvocation:
    """Environment and arguments for ansible-playbook; `private_dir` (0700, removed by the
    caller after the run) receives the vault password file when it comes from the environment."""
    opts = loaded.spec.provision.ansible
    config = config_file(loaded) or empty_config(private_dir)
    env = {"ANSIBLE_CONFIG": str(config)}
    if opts.vault_password_file:
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str((loaded.directory / opts.vault_password_file).resolve())
    elif opts.vault_password_env:
        private_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        path = private_dir / "vault-password"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(os.environ.get(opts.vault_password_env, ""))
        env["ANSIBLE_VAULT_PASSWORD_FILE"] = str(path)
    args = []
    if opts.tags:
        args.append(f"--tags={','.join(opts.tags)}")
    if opts.skip_tags:
        args.append(f"--skip-tags={','.join(opts.skip_tags)}")
    if opts.verbosity:
        args.append("-" + "v" * opts.verbosity)
    return AnsibleInvocation(env, [*args, *opts.extra_args])

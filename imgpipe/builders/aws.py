"""Build VMs in EC2: a source AMI (by id or by filters), a temporary key pair and security
group, one instance whose host key imgpipe generated and pinned before launch; then
stop, CreateImage tagged with the build's tags. The target's `publish:` settings (copy,
share, SSM) are shorthand for an `ami` publisher from it, which the pipeline runs next.

Each temporary resource is journaled under a name or tag chosen before the create call,
so cleanup finds it after a failure, Ctrl-C or kill -9. The AMI stays in the journal
until the whole target succeeded: a failed target leaves no image behind.

`ssh_host`/`ssh_port` connect somewhere other than the instance's address (a tunnel, a
forwarded port); the tests use them to reach a stand-in for the instance on loopback."""

from __future__ import annotations

import ipaddress
import shlex
import string
import time
import urllib.request
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from imgpipe.aws import buildres
from imgpipe.aws import images as amis
from imgpipe.aws.distribution import PublishSettings
from imgpipe.aws.errors import error_code, step
from imgpipe.aws.session import AwsSession, AwsSettings, shared_session
from imgpipe.builders.sshkeys import (
    BUILD_USER,
    KeyPair,
    build_vm_user_data,
    generate_ed25519,
    generate_host_keys,
    wait_for_ssh,
    write_known_hosts,
)
from imgpipe.core import (
    AMI,
    Artifact,
    CloudImage,
    RegionImage,
    SSHEndpoint,
    TargetContext,
    sleep_unless_cancelled,
)
from imgpipe.core.artifact import profile_data
from imgpipe.errors import BuildError, SpecError

AMI_NAME_FIELDS = {"spec", "target", "build_id", "date"}
CALLER_ADDRESS_URL = "https://checkip.amazonaws.com"


class SshInterface(StrEnum):
    PUBLIC_IP = "public_ip"
    PRIVATE_IP = "private_ip"


class AmiFilter(BaseModel):
    """Find the source AMI the way `aws ec2 describe-images` would."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    owners: list[str] = Field(
        min_length=1, description="Account ids or aliases (amazon, self, aws-marketplace) owning the AMI."
    )
    name: str = Field(description="AMI name pattern; * and ? are wildcards, e.g. debian-12-amd64-*.")
    architecture: Literal["x86_64", "arm64"] = Field("x86_64", description="CPU architecture.")
    filters: dict[str, str] = Field(
        default_factory=dict, description="More describe-images filters, e.g. virtualization-type: hvm."
    )
    most_recent: bool = Field(
        True, description="Take the newest match; if false, more than one match is an error."
    )


class AwsBuilderSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    builder: Literal["aws"] = Field(description="Build in an EC2 instance and capture an AMI.")
    aws: AwsSettings = Field(default_factory=AwsSettings, description="Region, profile and retries.")
    source_ami: str | None = Field(None, pattern=r"^ami-[0-9a-f]{8,17}$", description="Source AMI id.")
    source_ami_filter: AmiFilter | None = Field(None, description="Find the source AMI by owner and name.")
    instance_type: str = Field("t3.small", description="Instance type of the build instance.")
    subnet_id: str | None = Field(None, description="Subnet to launch in; default: the default VPC's.")
    vpc_id: str | None = Field(None, description="VPC of the security group; default: the subnet's.")
    associate_public_ip: bool | None = Field(
        None, description="Give the instance a public IP; default: subnet's."
    )
    volume_size_gb: int | None = Field(
        None, ge=1, le=16384, description="Root volume size; default: the AMI's."
    )
    volume_type: str = Field("gp3", description="Root volume type.")
    iam_instance_profile: str | None = Field(
        None, description="Instance profile (name) for roles that need AWS access while provisioning."
    )
    imdsv2_required: bool = Field(
        True, description="Require IMDSv2 session tokens on the build instance's metadata service."
    )
    ssh_interface: SshInterface = Field(
        SshInterface.PUBLIC_IP, description="Which instance address SSH uses."
    )
    ssh_cidrs: list[str] = Field(
        default_factory=list,
        description="Who may reach SSH; default: this machine's public address (public_ip) or the VPC.",
    )
    ssh_user: str = Field(
        BUILD_USER,
        description="SSH user imgpipe's cloud-config authorizes the build key for: by default a temporary "
        "user with sudo that the seal deletes (survives roles that turn off root login); root works too.",
    )
    ssh_host: str | None = Field(None, description="Connect here instead of the instance (a tunnel).")
    ssh_port: int = Field(22, ge=1, le=65535, description="SSH port (opened in the security group).")
    ssh_timeout_s: int = Field(900, ge=10, description="How long to wait for SSH once the instance runs.")
    instance_timeout_s: int = Field(900, ge=10, description="How long to wait for running/stopped.")
    image_timeout_s: int = Field(3600, ge=10, description="How long to wait for the AMI to be available.")
    poll_interval: float = Field(5.0, ge=0, description="Seconds between state polls.")
    ami_name: str = Field(
        "{spec}-{target}-{build_id}",
        description="AMI name template; fields: {spec}, {target}, {build_id}, {date} (YYYYMMDD).",
    )
    ami_description: str = Field("built by imgpipe", description="AMI description.")
    run_tags: dict[str, str] = Field(
        default_factory=dict, description="Extra tags on the temporary instance, volume, key and group."
    )
    publish: PublishSettings = Field(
        default_factory=PublishSettings,
        description="Tags, more regions, sharing, SSM pointer, KMS: shorthand for an `ami` publisher "
        "from this target.",
    )

    @model_validator(mode="after")
    def _one_source(self, info: ValidationInfo) -> AwsBuilderSettings:
        if isinstance(info.context, dict) and info.context.get("parent"):
            # the spec's source.parent gives the source AMI (lineage.with_parents sets source_ami)
            if self.source_ami is not None or self.source_ami_filter is not None:
                raise ValueError(
                    "the spec's source.parent is where this target starts: leave out source_ami and "
                    "source_ami_filter"
                )
        elif (self.source_ami is None) == (self.source_ami_filter is None):
            raise ValueError("set exactly one of source_ami and source_ami_filter")
        return self

    @field_validator("ami_name")
    @classmethod
    def _template(cls, value: str) -> str:
        fields = {name for _, name, _, _ in string.Formatter().parse(value) if name is not None}
        unknown = fields - AMI_NAME_FIELDS
        if unknown:
            raise ValueError(f"unknown field(s) {sorted(unknown)}; use {sorted(AMI_NAME_FIELDS)}")
        literal = "".join(text for text, _, _, _ in string.Formatter().parse(value))
        refused = dict.fromkeys(c for c in literal if c not in AMI_NAME_CHARS)
        if refused:
            raise ValueError(f"AWS refuses {', '.join(map(repr, refused))} in AMI names; use {AMI_NAME_RULE}")
        return value

    @field_validator("ssh_cidrs")
    @classmethod
    def _cidrs(cls, value: list[str]) -> list[str]:
        for cidr in value:
            ipaddress.ip_network(cidr, strict=False)  # ValueError names the bad one
        return value


TEST_BOOT = "test-boot"  # journal kind of what a test boot of the new AMI made
TEST_BOOT_SUFFIX = ".test-boot"  # its instance's imgpipe:target tag: the target's name plus this


@dataclass(frozen=True)
class _Instance:
    image_id: str
    target: str  # its imgpipe:target tag, which its journal cleaner finds it by
    client_token: str  # a retried RunInstances starts no second instance
    key_name: str | None  # the build's imported key pair; a test boot needs none (user data)
    workdir: Path  # its host keys and known_hosts


def find_source_ami(ec2: Any, settings: AwsBuilderSettings, region: str) -> dict[str, Any]:
    """The source AMI's description: `source_ami`, or the newest image `source_ami_filter`
    matches now (a spec error when none does, or several do and most_recent is false)."""
    if settings.source_ami:
        return amis.describe_image(ec2, settings.source_ami)
    f = settings.source_ami_filter
    assert f is not None
    filters = [
        {"Name": "name", "Values": [f.name]},
        {"Name": "architecture", "Values": [f.architecture]},
        {"Name": "state", "Values": ["available"]},
        *({"Name": k, "Values": [v]} for k, v in f.filters.items()),
    ]
    found = ec2.describe_images(Owners=f.owners, Filters=filters)["Images"]
    if not found:
        raise SpecError(
            f"no AMI named {f.name!r} ({f.architecture}) owned by {', '.join(f.owners)} in {region}",
            hint="check source_ami_filter's name pattern, owners and the region",
        )
    if len(found) > 1 and not f.most_recent:
        names = ", ".join(sorted(i.get("Name", i["ImageId"]) for i in found)[:5])
        raise SpecError(
            f"{len(found)} AMIs match {f.name!r}: {names}",
            hint="narrow the name pattern, or set most_recent: true",
        )
    return max(found, key=lambda i: i.get("CreationDate", ""))  # type: ignore[no-any-return]


def resolve_source_ami(settings: AwsBuilderSettings) -> str:
    """The id the target's source resolves to now (for a fingerprint: no build starts)."""
    session = AwsSession(settings.aws)
    with step("source", session.region, build=True):
        return str(find_source_ami(session.client("ec2"), settings, session.region)["ImageId"])


class AwsBuilder:
    Settings: ClassVar[type[BaseModel]] = AwsBuilderSettings
    builder_type: ClassVar[str] = "imgpipe.aws"
    produces: ClassVar[str] = AMI
    publish_shorthand: ClassVar[str] = "ami"  # its `publish:` settings are an `ami` publisher's

    def __init__(self, ctx: TargetContext) -> None:
        self.ctx = ctx
        self.settings: AwsBuilderSettings = ctx.settings  # type: ignore[assignment]
        self.name = f"imgpipe-{ctx.build_id}-{ctx.target}"
        self.tags = {
            **self.settings.run_tags,
            **buildres.build_tags(ctx.build_id, ctx.target, ctx.loaded.spec.name),
        }
        self.session: AwsSession | None = None
        self.source: dict[str, Any] = {}
        self.instance_id: str | None = None
        self.endpoint: SSHEndpoint | None = None
        self.test_instance_id: str | None = None
        self.test_endpoint: SSHEndpoint | None = None
        self._last_state_check = 0.0

    # seams for tests
    def make_session(self) -> AwsSession:
        return AwsSession(self.settings.aws)

    def _sleep(self, seconds: float) -> None:
        """Every wait ends early on Ctrl-C/SIGTERM; cleanup then removes what exists."""
        sleep_unless_cancelled(self.ctx.cancel, seconds)

    @property
    def ec2(self) -> Any:
        assert self.session is not None, "prepare() first"
        return self.session.client("ec2")

    @property
    def region(self) -> str:
        assert self.session is not None, "prepare() first"
        return self.session.region

    def _step(self, name: str) -> Any:
        return step(name, self.region, build=True)

    def _cleaner_args(self, **args: Any) -> dict[str, Any]:
        return {"region": self.region, "profile": self.settings.aws.profile, **args}

    def _journal(self, kind: str, cleaner: Any, **args: Any) -> int:
        return self.ctx.resources.track(kind, cleaner, **self._cleaner_args(**args))

    def prepare(self) -> dict[str, object]:
        self.image_name()  # a bad rendered ami_name is a SpecError here, before anything exists
        self.session = shared_session(self.ctx, self.settings.aws, self.make_session)
        with self._step("source"):
            image = self._find_source()
        self.source = image
        self.ctx.emit.message(f"source AMI {image['ImageId']} ({image.get('Name', '?')}) in {self.region}")
        return {
            "kind": "ami",
            "region": self.region,
            "image_id": image["ImageId"],
            "name": image.get("Name"),
            "owner": image.get("OwnerId"),
            "creation_date": image.get("CreationDate"),
        }

    def _find_source(self) -> dict[str, Any]:
        return find_source_ami(self.ec2, self.settings, self.region)

    def launch(self) -> SSHEndpoint:
        wd = self.ctx.workdir
        client = generate_ed25519(wd / "build_key", f"imgpipe-build-{self.ctx.build_id}")
        with self._step("key pair"):
            self._journal("aws-key-pair", buildres.remove_key_pair, key_name=self.name)
            args = {
                "KeyName": self.name,
                "PublicKeyMaterial": client.public.encode(),
                "TagSpecifications": buildres.tag_specs(self.tags, "key-pair"),
            }
            try:
                self.ec2.import_key_pair(**args)
            except Exception as exc:
                if error_code(exc) != "InvalidKeyPair.Duplicate":
                    raise
                # The name is this build's own: a retried call whose first try got through.
                # Import again over it, so the key is surely this build's public key.
                self.ec2.delete_key_pair(KeyName=self.name)
                self.ec2.import_key_pair(**args)
        with self._step("security group"):
            self.subnet_id, vpc_id = self._network()
            self.group_id = self._security_group(vpc_id)
        instance = _Instance(self.source["ImageId"], self.ctx.target, self.name[:64], self.name, wd)
        _, self.endpoint = self._boot(instance, client, "boot_to_ssh")
        return self.endpoint

    def boot_image(self, artifact: Artifact) -> SSHEndpoint:
        """An instance of the new AMI, for the image tests: new client and host keys, the
        build's security group, tagged as this target's test boot (`discard_image_boot`
        and the journal terminate it)."""
        if not isinstance(artifact, CloudImage) or artifact.kind != AMI:
            raise BuildError(f"the aws builder boots AMIs, not {artifact.kind!r} artifacts")
        wd = self.ctx.workdir / "test-boot"
        wd.mkdir(mode=0o700)
        client = generate_ed25519(wd / "build_key", f"imgpipe-test-{self.ctx.build_id}")
        target = f"{self.ctx.target}{TEST_BOOT_SUFFIX}"
        token = f"{self.name[:54]}{TEST_BOOT_SUFFIX}"
        instance = _Instance(artifact.origin.image_id, target, token, None, wd)
        self.test_instance_id, self.test_endpoint = self._boot(instance, client, "test_boot_to_ssh")
        return self.test_endpoint

    def discard_image_boot(self) -> None:
        with self._step("test boot"):
            buildres.terminate_build_instances(
                self.ec2,
                self.ctx.build_id,
                f"{self.ctx.target}{TEST_BOOT_SUFFIX}",
                timeout=self.settings.instance_timeout_s,
                poll_interval=self.settings.poll_interval,
            )

    def _boot(self, instance: _Instance, client: KeyPair, stage: str) -> tuple[str, SSHEndpoint]:
        """Launch one instance whose host key imgpipe generated and pins, and wait for SSH."""
        host_keys = generate_host_keys(instance.workdir, f"imgpipe-host-{self.ctx.build_id}")
        host = host_keys["ed25519"]
        with self._step("launch"):
            user_data = build_vm_user_data(client, host_keys, user=self.settings.ssh_user)
            launched = self._run_instance(instance, user_data)
        for key in host_keys.values():  # the instance has them now (user data); the seal removes them
            key.private.unlink()
        instance_id = launched["InstanceId"]
        if instance.target == self.ctx.target:
            self.instance_id = instance_id  # debug_hint names it even if SSH never answers
        self.ctx.emit.message(f"instance {instance_id} ({self.settings.instance_type}) launched")
        with self._step("wait"):
            running = buildres.wait_for_instance(
                self.ec2,
                instance_id,
                "running",
                timeout=self.settings.instance_timeout_s,
                poll_interval=self.settings.poll_interval,
                sleep=self._sleep,
            )
        address, port = self._ssh_address(running), self.settings.ssh_port
        known_hosts = instance.workdir / "known_hosts"
        write_known_hosts(known_hosts, address, port, host)
        endpoint = SSHEndpoint(
            address,
            port,
            self.settings.ssh_user,
            client.private,
            known_hosts,
            host.fingerprint,
            client.public,
            tuple(k.public for k in host_keys.values()),
        )
        with self.ctx.emit.stage(stage), self._step("wait"):
            wait_for_ssh(
                endpoint,
                timeout=self.settings.ssh_timeout_s,
                cancel=self.ctx.cancel,
                still_running=lambda: self._instance_running(instance_id),
                describe=lambda: f"instance {instance_id} in {self.region}",
                hint="check ssh_cidrs/ssh_interface reach the instance, or raise ssh_timeout_s",
            )
        return instance_id, endpoint

    def _network(self) -> tuple[str | None, str]:
        s = self.settings
        if s.subnet_id:
            subnet = self.ec2.describe_subnets(SubnetIds=[s.subnet_id])["Subnets"][0]
            return s.subnet_id, s.vpc_id or subnet["VpcId"]
        if s.vpc_id:
            return None, s.vpc_id
        vpcs = self.ec2.describe_vpcs(Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        if not vpcs:
            raise SpecError(
                f"{self.region} has no default VPC",
                hint="set subnet_id (and vpc_id) in the target",
            )
        return None, vpcs[0]["VpcId"]

    def _ssh_cidrs(self, vpc_id: str) -> list[str]:
        s = self.settings
        if s.ssh_cidrs:
            return s.ssh_cidrs
        if s.ssh_interface is SshInterface.PRIVATE_IP:
            return [self.ec2.describe_vpcs(VpcIds=[vpc_id])["Vpcs"][0]["CidrBlock"]]
        try:
            with urllib.request.urlopen(CALLER_ADDRESS_URL, timeout=10) as answer:
                address = ipaddress.ip_address(answer.read().decode().strip())
        except (OSError, ValueError) as exc:
            raise SpecError(
                f"could not find this machine's public address ({exc})",
                hint="set ssh_cidrs to the addresses that may reach the build instance",
            ) from None
        return [f"{address}/{address.max_prefixlen}"]

    def _security_group(self, vpc_id: str) -> str:
        cidrs = self._ssh_cidrs(vpc_id)
        self._journal(
            "aws-security-group", buildres.remove_security_group, vpc_id=vpc_id, group_name=self.name
        )
        try:
            group_id = self.ec2.create_security_group(
                GroupName=self.name,
                Description=f"imgpipe build {self.ctx.build_id}: SSH to the build instance",
                VpcId=vpc_id,
                TagSpecifications=buildres.tag_specs(self.tags, "security-group"),
            )["GroupId"]
        except Exception as exc:  # a retried call whose first try got through: the group is ours
            if error_code(exc) != "InvalidGroup.Duplicate":
                raise
            group_id = buildres.groups_named(self.ec2, vpc_id, self.name)[0]
        port = self.settings.ssh_port
        try:
            self.ec2.authorize_security_group_ingress(
                GroupId=group_id,
                IpPermissions=[
                    {
                        "IpProtocol": "tcp",
                        "FromPort": port,
                        "ToPort": port,
                        "IpRanges": [{"CidrIp": c} for c in cidrs if ":" not in c],
                        "Ipv6Ranges": [{"CidrIpv6": c} for c in cidrs if ":" in c],
                    }
                ],
            )
        except Exception as exc:
            if error_code(exc) != "InvalidPermission.Duplicate":
                raise
        self.ctx.emit.message(f"security group {group_id}: SSH from {', '.join(cidrs)}")
        return group_id  # type: ignore[no-any-return]

    def _run_instance(self, instance: _Instance, user_data: dict[str, Any]) -> dict[str, Any]:
        import yaml

        s = self.settings
        tags = {**self.tags, buildres.TARGET_TAG: instance.target}
        args: dict[str, Any] = {
            "ImageId": instance.image_id,
            "InstanceType": s.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "UserData": "#cloud-config\n" + yaml.safe_dump(user_data, sort_keys=False),
            "InstanceInitiatedShutdownBehavior": "terminate",  # a guest poweroff leaves nothing running
            "TagSpecifications": buildres.tag_specs(tags, "instance", "volume"),
            "ClientToken": instance.client_token,  # a retried RunInstances starts no second instance
            "MetadataOptions": {
                "HttpEndpoint": "enabled",
                "HttpTokens": "required" if s.imdsv2_required else "optional",
            },
        }
        if instance.key_name:
            args["KeyName"] = instance.key_name
        if s.iam_instance_profile:
            args["IamInstanceProfile"] = {"Name": s.iam_instance_profile}
        subnet_id = self.subnet_id
        if s.associate_public_ip is None:
            args["SecurityGroupIds"] = [self.group_id]
            if subnet_id:
                args["SubnetId"] = subnet_id
        else:
            nic: dict[str, Any] = {
                "DeviceIndex": 0,
                "Groups": [self.group_id],
                "AssociatePublicIpAddress": s.associate_public_ip,
                "DeleteOnTermination": True,
            }
            if subnet_id:
                nic["SubnetId"] = subnet_id
            args["NetworkInterfaces"] = [nic]
        if s.volume_size_gb and instance.key_name:  # the build instance's; an AMI keeps its own
            root = self.source.get("RootDeviceName", "/dev/xvda")
            args["BlockDeviceMappings"] = [
                {
                    "DeviceName": root,
                    "Ebs": {
                        "VolumeSize": s.volume_size_gb,
                        "VolumeType": s.volume_type,
                        "DeleteOnTermination": True,
                    },
                }
            ]
        # Recorded by tag before it exists: tags are applied atomically with the launch.
        kind = "aws-instance" if instance.target == self.ctx.target else TEST_BOOT
        self._journal(kind, buildres.remove_instances, build_id=self.ctx.build_id, target=instance.target)
        return self.ec2.run_instances(**args)["Instances"][0]  # type: ignore[no-any-return]

    def _ssh_address(self, instance: dict[str, Any]) -> str:
        s = self.settings
        if s.ssh_host:
            return s.ssh_host
        key = "PublicIpAddress" if s.ssh_interface is SshInterface.PUBLIC_IP else "PrivateIpAddress"
        address = instance.get(key)
        if not address:
            raise BuildError(
                f"instance {instance['InstanceId']} has no {s.ssh_interface.value.replace('_', ' ')}",
                hint="set associate_public_ip: true, use a public subnet, or ssh_interface: private_ip",
            )
        return str(address)

    def _instance_running(self, instance_id: str) -> bool:
        """Checked while SSH does not answer yet; rate-limited by the SSH wait's own pace."""
        now = time.monotonic()
        if now - self._last_state_check < 10:
            return True
        self._last_state_check = now
        reservations = self.ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
        return reservations[0]["Instances"][0]["State"]["Name"] in {"pending", "running"}

    def stop(self) -> None:
        with self._step("stop"):
            self.ec2.stop_instances(InstanceIds=[self.instance_id])
            buildres.wait_for_instance(
                self.ec2,
                str(self.instance_id),
                "stopped",
                timeout=self.settings.instance_timeout_s,
                poll_interval=self.settings.poll_interval,
                sleep=self._sleep,
            )

    def image_name(self) -> str:
        ctx = self.ctx
        name = self.settings.ami_name.format(
            spec=ctx.loaded.spec.name,
            target=ctx.target,
            build_id=ctx.build_id,
            date=time.strftime("%Y%m%d", time.gmtime()),
        )
        if not 3 <= len(name) <= 128 or not set(name) <= AMI_NAME_CHARS:
            raise SpecError(
                f"ami_name renders to {name!r}, not a valid AMI name",
                hint=f"3-128 characters: {AMI_NAME_RULE}",
            )
        return name

    def capture(self, dest_dir: Path, basename: str) -> CloudImage:
        """CreateImage and wait until it is available. The AMI's undo goes on the target's
        undo stack: the pipeline commits it only once the target succeeded (the `ami`
        publisher of the `publish:` shorthand then has tagged, copied and shared it)."""
        name = self.image_name()
        ctx, settings = self.ctx, self.settings
        image_tags = buildres.image_tags(
            ctx.build_id, ctx.target, ctx.loaded.spec.name, {**settings.run_tags, **settings.publish.tags}
        )
        ec2, region, undo, profile = self.ec2, self.region, ctx.undo, settings.aws.profile
        with self._step("create_image"):
            # Pushed (and journaled) before it exists, so a kill -9 right after still finds it:
            # by name and this build's tag (applied with the create), never by name alone, which
            # an earlier build's published image may share (an ami_name without {build_id}).
            undo.push(
                f"AMI {name} in {region}",
                lambda: amis.remove_images_named(region, name, ctx.build_id, profile),
                journal=(
                    "aws-ami",
                    amis.remove_images_named,
                    self._cleaner_args(name=name, build_id=ctx.build_id),
                ),
            )
            image_id = ec2.create_image(
                InstanceId=self.instance_id,
                Name=name,
                Description=self.settings.ami_description,
                TagSpecifications=buildres.tag_specs(image_tags, "image"),
            )["ImageId"]
        self.ctx.emit.message(f"creating AMI {image_id} ({name}); waiting until available")
        started, last = time.monotonic(), [""]

        def progress(where: str, state: str) -> None:  # CreateImage takes minutes: say so
            if state != last[0]:
                last[0] = state
                self.ctx.emit.message(
                    f"AMI {image_id} in {where}: {state} ({time.monotonic() - started:.0f} s)"
                )

        with self._step("wait"):
            done = amis.wait_for_images(
                {region: (ec2, image_id)},
                timeout=self.settings.image_timeout_s,
                poll_interval=self.settings.poll_interval,
                sleep=self._sleep,
                on_poll=progress,
            )
        image = RegionImage(
            region=region, image_id=image_id, snapshot_ids=tuple(amis.snapshot_ids(done[region]))
        )
        assert self.session is not None
        buildres.mark_published_on_commit(undo, self.session, [image], build=True)
        # the profile it was made with: promote, revoke and prune reach it the same way
        return CloudImage(AMI, name, (image,), image_tags, profile_data(self.settings.aws.profile))

    def debug_hint(self) -> str:
        region = self.session.region if self.session else "?"
        if self.test_endpoint is not None:  # the image tests failed: their instance is what to look at
            return (
                f"test instance {self.test_instance_id} of the new AMI in {region} is kept running.\n"
                f"  reach it:  {shlex.join(self.test_endpoint.ssh_argv())}\n"
                f"  remove it: imgpipe gc --build {self.ctx.build_id}"
            )
        ep = self.endpoint
        ssh = shlex.join(ep.ssh_argv()) if ep else "(the instance never reached SSH)"
        return (
            f"build instance {self.instance_id or '(not launched)'} in "
            f"{region} is kept running for debugging.\n"
            f"  reach it:  {ssh}\n"
            f"  remove it: imgpipe gc --build {self.ctx.build_id}"
        )


AMI_NAME_CHARS = set(string.ascii_letters + string.digits + " ()[]./-'@_")
AMI_NAME_RULE = "letters, digits, spaces and ( ) [ ] . / - ' @ _"

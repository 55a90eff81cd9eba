"""Where an AMI goes once it exists (more regions, accounts, tags, an SSM pointer): the
settings of the `ami` publisher, and of the `publish:` shorthand on the targets and
publishers that make AMIs."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator

ACCOUNT = re.compile(r"^\d{12}$")
ORGANIZATION = re.compile(r"^arn:aws[\w-]*:organizations::\d{12}:organization/o-[a-z0-9]+$")
ORG_UNIT = re.compile(r"^arn:aws[\w-]*:organizations::\d{12}:ou/o-[a-z0-9]+/ou-[a-z0-9-]+$")


class PublishSettings(BaseModel):
    """Where an AMI goes once it exists: regions, accounts, tags, the "latest" pointer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    copy_to: list[str] = Field(
        default_factory=list, description="More regions to copy the AMI to (its own region is implied)"
    )
    share_with: list[str] = Field(
        default_factory=list,
        description="AWS account ids (12 digits), organization ARNs or organizational unit ARNs "
        "allowed to launch the AMI; accounts also get createVolumePermission on its snapshots",
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Tags set on the AMI, its copies and all their snapshots"
    )
    ssm_parameter: str | None = Field(
        None, description="SSM parameter name set to the AMI id in every region, e.g. /images/web/latest"
    )
    kms_key_id: str | None = Field(
        None,
        description="KMS key (id, ARN or alias) to encrypt the copies with; copies are unencrypted "
        "re-encryptions of the source unless set",
    )
    kms_key_ids: dict[str, str] = Field(
        default_factory=dict, description="Per-region KMS keys for the copies, overriding kms_key_id"
    )
    wait_timeout: float = Field(
        3600.0, gt=0, description="Seconds to wait for all copies to become available"
    )
    poll_interval: float = Field(15.0, ge=0, description="Seconds between state polls while waiting")

    @field_validator("share_with")
    @classmethod
    def _principals(cls, value: list[str]) -> list[str]:
        bad = [v for v in value if not (ACCOUNT.match(v) or ORGANIZATION.match(v) or ORG_UNIT.match(v))]
        if bad:
            raise ValueError(f"not an account id, organization ARN or OU ARN: {', '.join(bad)}")
        return value


def launch_permissions(principals: list[str]) -> list[dict[str, str]]:
    perms = []
    for principal in principals:
        if ACCOUNT.match(principal):
            perms.append({"UserId": principal})
        elif ORG_UNIT.match(principal):
            perms.append({"OrganizationalUnitArn": principal})
        else:
            perms.append({"OrganizationArn": principal})
    return perms

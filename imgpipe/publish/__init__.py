"""Publishers: what happens to an image once it exists (AWS: tag, copy, share, SSM;
a local qcow2/raw imported as an AMI). boto3 is imported only when a publish runs."""

from imgpipe.aws.distribution import PublishSettings
from imgpipe.core.artifact import RegionImage
from imgpipe.publish.ami import AmiPublisher, PublishResult
from imgpipe.publish.aws_import import DiskFormat, ImageImporter, ImportSettings

__all__ = [
    "AmiPublisher",
    "DiskFormat",
    "ImageImporter",
    "ImportSettings",
    "PublishResult",
    "PublishSettings",
    "RegionImage",
]

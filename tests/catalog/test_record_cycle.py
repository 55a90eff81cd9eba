"""A bake recorded start to finish reads back the same through every query."""

from datetime import UTC, datetime, timedelta

import pytest

from imgpipe.catalog import CatalogError, Status

ORIGIN = "ci-1:/specs/web.yml"

LOCAL_RECORD = {
    "artifact_id": "web-local.qcow2",
    "files": [{"name": "web-local.qcow2", "size": 123456, "sha256": "ab" * 32}],
    "timings": {"provision": 41.5, "capture": 12.0},
    "build_vm": {"host_key": "SHA256:abc", "build_key": "SHA256:def"},
    "verify": {"passed": 7, "failed": 0},
    "sbom": {"file": "web-local.cdx.json", "sha256": "cd" * 32, "packages": 312},
    "source": {"bootstrap": "debian/bookworm", "sha256": "ef" * 32},
    "error": None,
}
AWS_RECORD = {
    "artifact_id": "us-east-1:ami-0aaa,eu-west-1:ami-0bbb",
    "files": [],
    "data": {
        "images": [
            {"region": "us-east-1", "image_id": "ami-0aaa", "snapshot_ids": ["snap-1"]},
            {"region": "eu-west-1", "image_id": "ami-0bbb", "snapshot_ids": ["snap-2"]},
        ]
    },
    "published": [
        {
            "publisher": "shared",
            "publisher_type": "ami",
            "artifact_id": "ap-south-1:ami-0ccc",
            "data": {
                "images": [{"region": "ap-south-1", "image_id": "ami-0ccc", "snapshot_ids": ["snap-3"]}]
            },
        }
    ],
}


def _bake(catalog, build_id, *, local="succeeded", fingerprint="fp-1", build="succeeded"):
    catalog.claim_spec("web", ORIGIN)
    catalog.start_build(
        build_id,
        "web",
        "/specs/web.yml",
        ["local", "aws"],
        imgpipe_version="0.1.0",
        ansible_core="2.17.1",
    )
    catalog.finish_target(
        build_id,
        "local",
        status=local,
        fingerprint=fingerprint,
        fingerprint_parts={"roles": {"nginx": "11"}, "source": "22"},
        publish_fingerprint="pub-1",
        record=LOCAL_RECORD,
    )
    catalog.finish_target(
        build_id,
        "aws",
        status="succeeded",
        fingerprint="fp-aws",
        fingerprint_parts={"roles": {"nginx": "11"}},
        publish_fingerprint=None,
        record=AWS_RECORD,
    )
    catalog.finish_build(build_id, build)


def test_a_build_reads_back_through_every_query(open_cat):
    catalog = open_cat()
    before = datetime.now(UTC)
    _bake(catalog, "20261127T050000Z-aaaaaa")

    build = open_cat().get("20261127T050000Z-aaaaaa")  # a second connection sees it all
    assert build is not None
    assert (build.spec_name, build.spec_path, build.status) == ("web", "/specs/web.yml", Status.SUCCEEDED)
    assert (build.imgpipe_version, build.ansible_core) == ("0.1.0", "2.17.1")
    assert build.started_at.tzinfo is UTC and build.finished_at.tzinfo is UTC
    assert before - timedelta(seconds=1) <= build.started_at <= build.finished_at <= datetime.now(UTC)
    assert [t.target for t in build.targets] == ["aws", "local"]

    local = build.target("local")
    assert local.status is Status.SUCCEEDED
    assert (local.fingerprint, local.publish_fingerprint) == ("fp-1", "pub-1")
    assert local.fingerprint_parts == {"roles": {"nginx": "11"}, "source": "22"}
    assert local.artifact_id == "web-local.qcow2"
    assert local.record == LOCAL_RECORD
    assert [(a.kind, a.ref, a.data["size"]) for a in local.artifacts] == [
        ("image-file", "web-local.qcow2", 123456)
    ]

    aws = build.target("aws")
    assert [(a.kind, a.region, a.ref, a.data["snapshot_ids"]) for a in aws.artifacts] == [
        ("ami", "us-east-1", "ami-0aaa", ["snap-1"]),
        ("ami", "eu-west-1", "ami-0bbb", ["snap-2"]),
        ("ami", "ap-south-1", "ami-0ccc", ["snap-3"]),
    ]
    assert aws.artifacts[2].data["publisher"] == "shared"

    assert catalog.builds() == [build]
    assert catalog.builds("web") == [build] and catalog.builds("other") == []
    assert catalog.last_good("web", "local") == local
    assert catalog.find_good("web", "local", "fp-1") == local
    assert catalog.find_good("web", "local", "fp-2") is None
    assert catalog.last_good("web", "arm") is None


def test_newest_first_and_only_good_targets(open_cat):
    catalog = open_cat()
    _bake(catalog, "20261127T050000Z-000001", fingerprint="fp-1")
    _bake(catalog, "20261127T060000Z-000002", fingerprint="fp-2")
    _bake(catalog, "20261127T070000Z-000003", fingerprint="fp-2", local="failed", build="failed")

    assert [b.id for b in catalog.builds()] == [
        "20261127T070000Z-000003",
        "20261127T060000Z-000002",
        "20261127T050000Z-000001",
    ]
    assert [b.id for b in catalog.builds(limit=1)] == ["20261127T070000Z-000003"]
    assert catalog.last_good("web", "local").build_id == "20261127T060000Z-000002"
    assert catalog.find_good("web", "local", "fp-2").build_id == "20261127T060000Z-000002"
    assert catalog.find_good("web", "local", "fp-1").build_id == "20261127T050000Z-000001"
    # the failed build's aws target succeeded: its image is good all the same
    assert catalog.last_good("web", "aws").build_id == "20261127T070000Z-000003"


def test_get_by_unique_prefix(open_cat):
    catalog = open_cat()
    _bake(catalog, "20261127T050000Z-abc001")
    _bake(catalog, "20261127T050000Z-abd002")

    assert catalog.get("20261127T050000Z-abd").id == "20261127T050000Z-abd002"
    assert catalog.get("nope") is None
    assert catalog.get("20261127T050000Z-a_c%") is None  # LIKE's wildcards are plain characters here
    with pytest.raises(CatalogError, match="ambiguous"):
        catalog.get("20261127T050000Z-ab")


@pytest.mark.parametrize(("ending", "left"), [("interrupted", "interrupted"), ("failed", "failed")])
def test_a_target_never_finished_takes_the_builds_ending(open_cat, ending, left):
    catalog = open_cat()
    catalog.claim_spec("web", ORIGIN)
    catalog.start_build("b1", "web", "/specs/web.yml", ["local"], imgpipe_version="0", ansible_core="0")
    assert catalog.get("b1").status is Status.RUNNING
    assert catalog.get("b1").target("local").status is Status.RUNNING

    catalog.finish_build("b1", ending)
    build = catalog.get("b1")
    assert (build.status, build.target("local").status) == (ending, left)
    assert build.target("local").finished_at is not None
    with pytest.raises(CatalogError, match="already ended"):
        catalog.finish_build("b1", "succeeded")


def test_bad_endings_and_unknown_names_are_refused(open_cat):
    catalog = open_cat()
    with pytest.raises(CatalogError, match="not claimed"):
        catalog.start_build("b1", "web", "/x.yml", ["local"], imgpipe_version="0", ansible_core="0")
    catalog.claim_spec("web", ORIGIN)
    catalog.start_build("b1", "web", "/x.yml", ["local"], imgpipe_version="0", ansible_core="0")
    with pytest.raises(ValueError, match="abandoned"):
        catalog.finish_build("b1", "abandoned")
    with pytest.raises(CatalogError, match="no target 'arm'"):
        catalog.finish_target(
            "b1",
            "arm",
            status="failed",
            fingerprint=None,
            fingerprint_parts={},
            publish_fingerprint=None,
            record={},
        )
    with pytest.raises(CatalogError):
        catalog.start_build("b1", "web", "/x.yml", ["local"], imgpipe_version="0", ansible_core="0")
    assert catalog.get("b1").status is Status.RUNNING  # the refused duplicate changed nothing


def test_targets_finishing_in_parallel_threads(open_cat):
    """bake runs targets in threads: each records its end through the one Catalog."""
    from concurrent.futures import ThreadPoolExecutor

    catalog = open_cat()
    catalog.claim_spec("web", ORIGIN)
    targets = [f"t{n}" for n in range(8)]
    catalog.start_build("b1", "web", "/specs/web.yml", targets, imgpipe_version="0", ansible_core="0")

    def finish(target):
        record = {"files": [{"name": f"{target}.qcow2", "size": 1, "sha256": "00"}]}
        catalog.finish_target(
            "b1", target, status="succeeded", fingerprint=target, fingerprint_parts={},
            publish_fingerprint=None, record=record,
        )  # fmt: skip

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(finish, targets))
    catalog.finish_build("b1", "succeeded")
    assert {t.target: t.status for t in catalog.get("b1").targets} == dict.fromkeys(targets, Status.SUCCEEDED)

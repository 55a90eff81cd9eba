"""The docs hold: the spec reference is what scripts/gen-spec-reference makes of the spec's
schema now (so it can't drift from the models), every relative link in README.md and
docs/*.md reaches an existing file and heading, and nothing points at a file the
repository does not have."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO

GENERATOR = REPO / "scripts" / "gen-spec-reference"
REFERENCE = REPO / "docs" / "spec-reference.md"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~).*?^\1[^\S\n]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1", re.S)
LINK = re.compile(r"(?<!!)\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})[^\S\n]+(.+?)[^\S\n]*#*[^\S\n]*$", re.M)


def prose(text: str) -> str:
    """The text without fenced code blocks and code spans: links there are not links."""
    return CODE_SPAN.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text, lower case, punctuation dropped
    (letters, digits, spaces, '-' and '_' stay), spaces as '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link's text
    text = text.replace("`", "").lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _level, title in HEADING.findall(FENCE.sub("", path.read_text())):
        base = slug(title)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    found |= set(re.findall(r"<a\s+(?:id|name)=\"([^\"]+)\"", path.read_text()))
    return found


def relative_links(path: Path) -> list[str]:
    return [
        target
        for target in LINK.findall(prose(path.read_text()))
        if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I)  # http:, https:, mailto: ...
    ]


def test_the_spec_reference_is_what_the_generator_makes_of_the_schema_now():
    # A subprocess: only the plugins installed with imgpipe count, never a test's plugin path.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, str(GENERATOR)], cwd=REPO, env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    committed = REFERENCE.read_text() if REFERENCE.exists() else ""
    assert committed == done.stdout, (
        "docs/spec-reference.md is out of date with the spec's schema: "
        "run `.venv/bin/python scripts/gen-spec-reference --write` and commit the result"
    )


def test_the_reference_names_every_field_of_the_schema():
    import json

    schema = json.loads(
        subprocess.run(
            [sys.executable, "-m", "imgpipe.cli", "schema"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    text = REFERENCE.read_text()
    for name, definition in schema["$defs"].items():
        for field in definition.get("properties", {}):
            assert re.search(rf"`[^`]*\b{re.escape(field)}`", text), f"{name}.{field} is not in the reference"


def test_every_relative_link_reaches_a_file_and_heading_that_exist():
    broken = []
    for doc in DOCS:
        for target in relative_links(doc):
            file_part, _, anchor = target.partition("#")
            dest = (doc.parent / file_part).resolve() if file_part else doc
            if REPO.resolve() not in [dest, *dest.parents]:
                broken.append(f"{doc.name}: {target} (outside the repository)")
            elif not dest.exists():
                broken.append(f"{doc.name}: {target} (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                broken.append(f"{doc.name}: {target} (no such heading in {dest.name})")
    assert broken == []


def test_the_docs_link_to_each_other():
    readme_links = {t.partition("#")[0] for t in relative_links(REPO / "README.md")}
    for doc in DOCS[1:]:
        assert f"docs/{doc.name}" in readme_links, f"README.md does not link to docs/{doc.name}"


def test_no_doc_mentions_a_file_the_repository_does_not_have():
    for doc in DOCS:
        assert "facts.md" not in doc.read_text().lower(), f"{doc.name} mentions FACTS.md"


def test_the_link_checker_sees_links_and_anchors_as_github_does():
    sample = "# A `code` heading (with: punctuation)\n## Same\n## Same\n```\n# not a heading\n```\n"
    assert slug("Publishing a local image to AWS (`publish:`)") == "publishing-a-local-image-to-aws-publish"
    assert slug("An image's life: channels, lineage, revocation, retention") == (
        "an-images-life-channels-lineage-revocation-retention"
    )
    assert LINK.findall(prose("see [x](a.md#b) and `[y](c.md)` and ![i](p.png)")) == ["a.md#b"]
    assert [slug(t) for _, t in HEADING.findall(FENCE.sub("", sample))] == [
        "a-code-heading-with-punctuation",
        "same",
        "same",
    ]

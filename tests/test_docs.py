"""The docs: the mkdocs site builds with no warning (a broken link or anchor, or a page missing from
the nav, fails), and the README's relative links and anchors resolve (the README is not in the site)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs"
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def mkdocs_build(project: Path, site: Path) -> subprocess.CompletedProcess:
    # the snippets' base path ("." in mkdocs.yml) is the project folder, so mkdocs runs there
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=project,
        capture_output=True,
        text=True,
        env=env,
        check=False,
        timeout=300,
    )


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives a file's headings (code fences skipped)."""
    anchors, fence = set(), False
    for line in markdown.splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and (m := re.match(r"#{1,6} (.*)", line)):
            text = re.sub(r"[`*]", "", m.group(1)).strip().lower()
            anchors.add(re.sub(r"[^\w\- ]", "", text).replace(" ", "-"))
    return anchors


def relative_links(markdown: str) -> list[str]:
    prose = re.sub(r"^```.*?^```", "", markdown, flags=re.S | re.M)
    return [t for t in LINK.findall(prose) if not re.match(r"[a-z]+:", t)]


def test_the_site_builds_with_no_warning(tmp_path):
    # When the site is built as `make docs` builds it
    result = mkdocs_build(REPO, tmp_path / "site")

    # then it builds, warns of nothing, and every page is in it
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "WARNING" not in output, output
    for page in DOCS.glob("*.md"):
        built = tmp_path / "site" / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), f"{page.name} was not built"
    # and the segment example the README holds is in the segments page
    assert "seg_email_clickers" in (tmp_path / "site" / "segments" / "index.html").read_text()


def test_a_broken_link_an_unknown_anchor_or_a_page_missing_from_the_nav_fails_the_build(tmp_path):
    # Given a copy of the docs with a link to a missing page, an anchor no heading makes, an absolute
    # link and a page that is not in the nav
    project = tmp_path / "project"
    project.mkdir()
    shutil.copytree(DOCS, project / "docs")
    shutil.copy(REPO / "mkdocs.yml", project)
    shutil.copy(REPO / "README.md", project)
    with (project / "docs" / "cli.md").open("a") as f:
        f.write("\n[gone](no-such-page.md) [anchor](guarantee.md#no-such-heading) [absolute](/cli.md)\n")
    (project / "docs" / "orphan.md").write_text("# Orphan\n")

    # When it is built
    result = mkdocs_build(project, tmp_path / "site")

    # then the build fails and names each
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "'no-such-page.md', but the target is not found" in output, output
    assert "does not contain an anchor '#no-such-heading'" in output, output
    assert "'/cli.md'" in output, output
    assert 'not included in the "nav"' in output and "orphan.md" in output, output


def test_the_readme_links_resolve():
    # Given the README's relative links (the README is not part of the site)
    readme = (REPO / "README.md").read_text()
    links = relative_links(readme)
    assert links

    # then each names a file of the repository, and an anchor a heading of that file makes
    for link in links:
        path, _, anchor = link.partition("#")
        target = (REPO / path) if path else REPO / "README.md"
        assert target.exists(), f"README links to {link}: {target} does not exist"
        if anchor:
            assert anchor in github_anchors(target.read_text()), f"README links to {link}: no such heading"


def test_the_readme_lists_every_page():
    # Given the pages under docs/
    linked = {(REPO / link.partition("#")[0]).resolve() for link in relative_links((REPO / "README.md").read_text())}

    # then the README's contents list points to each
    missing = sorted(p.name for p in DOCS.glob("*.md") if p.resolve() not in linked)
    assert not missing, f"the README does not link to {missing}"

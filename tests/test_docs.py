"""The documentation as a site: every relative link and anchor of README.md,
CHANGELOG.md and docs/ resolves, every page is reachable from docs/index.md,
the README stays short and names every registered method up front, and
nothing in it speaks of how the project is developed."""
import glob
import os.path as osp
import re
from collections import Counter

import pytest

from mmseg_cvpt.methods import BUILT_IN
from tiny_runs import REPO

PAGES = sorted([osp.join(REPO, 'README.md'), osp.join(REPO, 'CHANGELOG.md')]
               + glob.glob(osp.join(REPO, 'docs', '*.md')))
LINK = re.compile(r'!?\[[^\]]*\]\(([^)\s]+)\)')


def prose(path):
    """The file's lines outside fenced code blocks."""
    lines, fenced = [], False
    with open(path) as file:
        for line in file:
            if line.lstrip().startswith('```'):
                fenced = not fenced
            elif not fenced:
                lines.append(line.rstrip('\n'))
    return lines


def anchors(path):
    """GitHub's anchors of the file's headings (``-1``, ``-2`` for
    repeats)."""
    seen = Counter()
    found = set()
    for line in prose(path):
        match = re.match(r'#{1,6} (.*)', line)
        if match:
            slug = re.sub(r'[^\w\- ]', '', match.group(1).strip().lower())
            slug = slug.replace(' ', '-')
            found.add(slug if not seen[slug] else f'{slug}-{seen[slug]}')
            seen[slug] += 1
    return found


def links(path):
    for number, line in enumerate(prose(path), 1):
        for target in LINK.findall(line):
            if not re.match(r'[a-z]+:', target):
                yield number, target


@pytest.mark.parametrize('page', PAGES, ids=lambda p: osp.relpath(p, REPO))
def test_every_relative_link_and_anchor_resolves(page):
    broken = []
    for number, target in links(page):
        path, _, anchor = target.partition('#')
        resolved = osp.normpath(osp.join(osp.dirname(page), path)) \
            if path else page
        if not osp.exists(resolved):
            broken.append(f'line {number}: {target} (no {resolved})')
        elif anchor and (not resolved.endswith('.md')
                         or anchor not in anchors(resolved)):
            broken.append(f'line {number}: {target} (no heading #{anchor})')
    assert not broken, f'{osp.relpath(page, REPO)}: ' + '; '.join(broken)


def test_every_docs_page_is_linked_from_the_index():
    index = osp.join(REPO, 'docs', 'index.md')
    linked = {osp.normpath(osp.join(osp.dirname(index), target.split('#')[0]))
              for _, target in links(index)}
    pages = set(glob.glob(osp.join(REPO, 'docs', '*.md'))) - {index}
    assert not pages - linked, sorted(pages - linked)


def test_readme_is_short_and_names_every_method_first():
    with open(osp.join(REPO, 'README.md')) as file:
        lines = file.read().split('\n')
    assert len(lines) <= 251  # wc -l: at most 250 lines
    first_screen = ' '.join(lines[:40])
    assert 'bash tools/quickstart.sh' in first_screen
    assert 'python -m pytest -q -n 3 tests' in first_screen
    missing = [m.label for m in BUILT_IN
               if m.label.lower() not in first_screen.lower()]
    assert not missing, missing


def test_docs_say_nothing_of_how_the_project_is_developed():
    found = [f'{osp.relpath(page, REPO)}: {line.strip()}'
             for page in PAGES for line in open(page)
             if re.search(r'lent|device tool|can_start_another|session',
                          line, re.IGNORECASE)]
    assert not found, found

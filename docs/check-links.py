#!/usr/bin/env python3
"""Checks the links of README.md and docs/*.md.

Every relative link must name a file or folder that exists in the repository, and an
anchor (`file.md#heading`, `#heading`) must name a heading of that file, spelled as GitHub
spells heading anchors. No link may leave the repository: neither a relative path that
climbs out of it nor an absolute URL, since a reader with only a clone must be able to
follow every one.

Usage: python3 docs/check-links.py   (from anywhere; exit status 1 on any problem)
"""

import re
import sys
import unicodedata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
# [text](target) and ![alt](target), with an optional "title"; text may hold one level of
# nested brackets (`[`code`]` inside a link text is common).
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]*)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+.*)?$")
AUTOLINK = re.compile(r"<([a-zA-Z][a-zA-Z0-9+.-]*:[^>\s]*)>")
SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")


def prose_lines(text):
    """Yields (line number, line) outside fenced code blocks."""
    fenced = None
    for number, line in enumerate(text.splitlines(), start=1):
        marker = FENCE.match(line)
        if marker:
            if fenced is None:
                fenced = marker.group(1)
            elif marker.group(1) == fenced:
                fenced = None
            continue
        if fenced is None:
            yield number, line


def heading_text(raw):
    """The text GitHub makes an anchor from: markup removed, code spans kept as text."""
    text = CODE_SPAN.sub(lambda m: m.group(2), raw)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)  # inline HTML
    text = re.sub(r"(\*\*|__|\*|_(?=\w)|(?<=\w)_)", "", text)  # emphasis markers
    return text


def slug(text):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    kept = []
    for ch in text.strip().lower():
        category = unicodedata.category(ch)
        if ch in " -_" or category[0] in "LN" or category == "Mn":
            kept.append("-" if ch == " " else ch)
    return "".join(kept)


_anchor_cache = {}


def anchors(path):
    """Every anchor of a markdown file's headings, with GitHub's -1, -2 for repeats."""
    if path not in _anchor_cache:
        seen = {}
        found = set()
        for _, line in prose_lines(path.read_text(encoding="utf-8")):
            match = HEADING.match(line)
            if not match:
                continue
            base = slug(heading_text(match.group(2)))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
        _anchor_cache[path] = found
    return _anchor_cache[path]


def links(text):
    """Yields (line number, target) of every link outside code."""
    for number, line in prose_lines(text):
        bare = CODE_SPAN.sub("", line)
        for match in INLINE_LINK.finditer(bare):
            yield number, match.group(1)
        match = REFERENCE_DEF.match(bare)
        if match:
            yield number, match.group(1)
        for match in AUTOLINK.finditer(bare):
            yield number, match.group(1)


def check(path):
    problems = []
    text = path.read_text(encoding="utf-8")
    where = path.relative_to(ROOT)
    for number, target in links(text):
        if not target:
            problems.append(f"{where}:{number}: empty link target")
            continue
        if SCHEME.match(target) or target.startswith("//"):
            problems.append(f"{where}:{number}: {target} leaves the repository")
            continue
        file_part, _, anchor = target.partition("#")
        if file_part.startswith("/"):
            problems.append(f"{where}:{number}: {target}: use a path relative to the file")
            continue
        resolved = (path.parent / file_part).resolve() if file_part else path
        try:
            resolved.relative_to(ROOT)
        except ValueError:
            problems.append(f"{where}:{number}: {target} leaves the repository")
            continue
        if not resolved.exists():
            problems.append(f"{where}:{number}: {target}: no such file")
            continue
        if anchor:
            if resolved.is_dir() or resolved.suffix.lower() != ".md":
                problems.append(f"{where}:{number}: {target}: anchors only work on markdown files")
            elif anchor not in anchors(resolved):
                problems.append(
                    f"{where}:{number}: {target}: no heading with anchor #{anchor} in "
                    f"{resolved.relative_to(ROOT)}"
                )
    return problems


def main():
    problems = []
    checked = 0
    for path in FILES:
        if path.exists():
            checked += 1
            problems.extend(check(path))
    for problem in problems:
        print(problem)
    print(f"{checked} files checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())

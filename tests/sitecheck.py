"""Static sites the tests build (the portfolio, the course website): every link must resolve."""

from __future__ import annotations

from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlparse


class Links(HTMLParser):
    """The href/src links and the ids (anchors) of one page."""

    def __init__(self):
        super().__init__()
        self.found, self.ids = [], set()

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name in ("href", "src") and value:
                self.found.append(value)
            elif name in ("id", "name") and value:
                self.ids.add(value)


def parse(page: Path) -> Links:
    parser = Links()
    parser.feed(page.read_text(encoding="utf-8"))
    return parser


def links_of(page: Path) -> list[str]:
    return parse(page).found


def assert_links_resolve(site: Path, external_ok) -> dict:
    """Every link of every page resolves: a file of the site (and, with a #fragment, an id in it), an image
    embedded in the page (a `data:image/...` URI, e.g. a lesson's drawn diagram), or an external address
    `external_ok(url)` accepts. Returns {"internal": n, "external": n, "embedded": n}."""
    counts, pages = {"internal": 0, "external": 0, "embedded": 0}, {}
    for page in site.rglob("*.html"):
        for link in parse(page).found:
            if link.startswith("data:"):
                counts["embedded"] += 1
                assert link.startswith("data:image/"), f"{page.relative_to(site)} embeds something not an image"
                continue
            if urlparse(link).scheme:
                counts["external"] += 1
                assert external_ok(link), f"{page.relative_to(site)} links outside the site: {link}"
                continue
            counts["internal"] += 1
            path, _, fragment = link.partition("#")
            target = (page.parent / unquote(path)).resolve() if path else page.resolve()
            assert target.is_file(), f"{page.relative_to(site)}: {link} does not resolve"
            if fragment and target.suffix == ".html":
                ids = pages.setdefault(target, parse(target).ids)
                # as a browser looks: the fragment as written, then percent-decoded (HTML's indicated element)
                assert fragment in ids or unquote(fragment) in ids, f"{page.relative_to(site)}: {link} names no anchor"
    return counts

"""Rewrite the README's configuration table from stream_app/settings.py (`make readme`)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from stream_app.settings import settings_markdown

BLOCK = re.compile(r"(<!-- SETTINGS-TABLE:BEGIN[^>]*-->\n).*?(<!-- SETTINGS-TABLE:END -->)", re.S)


def render(readme: str) -> str:
    if not BLOCK.search(readme):
        raise SystemExit("README.md has no SETTINGS-TABLE markers")
    return BLOCK.sub(lambda m: m.group(1) + settings_markdown() + "\n" + m.group(2), readme)


if __name__ == "__main__":
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    path.write_text(render(path.read_text()))

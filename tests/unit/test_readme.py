"""The README's configuration table is generated from the settings; this keeps it from drifting."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _load_renderer():
    spec = importlib.util.spec_from_file_location(
        "readme_settings", ROOT / "scripts/readme_settings.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_settings_table_matches_settings() -> None:
    readme = (ROOT / "README.md").read_text()
    rendered = _load_renderer().render(readme)
    assert readme == rendered, "README settings table is stale: run `make readme`"


def test_every_setting_is_documented_in_readme() -> None:
    from stream_app.settings import settings_table

    readme = (ROOT / "README.md").read_text()
    for env, _, _ in settings_table():
        assert f"`{env}`" in readme

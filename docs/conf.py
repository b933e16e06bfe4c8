"""Sphinx configuration for dserver-notification-plugin.

The docs build needs only Sphinx (and sphinx-rtd-theme if available): the
settings table is rendered from config.py by file path, and the HTTP API is
described by hand, so neither dservercore nor the plugin must be installed.
"""
import pathlib
import sys
import tomllib
from datetime import date

from docutils import nodes
from docutils.parsers.rst import Directive
from docutils.statemachine import StringList

DOCS = pathlib.Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS))

import settings_table  # noqa: E402  (needs DOCS on sys.path)

_pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))

project = "dserver-notification-plugin"
author = "dserver-notification-plugin developers"
copyright = f"{date.today().year}, {author}"
release = _pyproject["project"]["version"]
version = release

extensions = []
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = []
highlight_language = "none"

try:
    import sphinx_rtd_theme  # noqa: F401
    html_theme = "sphinx_rtd_theme"
except ImportError:  # the docs still build, just plainer
    html_theme = "alabaster"
html_static_path = []
html_title = f"{project} {release}"


class SettingsTable(Directive):
    """``.. settings-table::`` inserts the table rendered from config.Settings."""

    has_content = False

    def run(self):
        source = self.state_machine.get_source(self.lineno)
        lines = StringList(settings_table.render_table().splitlines(), source=source)
        holder = nodes.container()
        self.state.nested_parse(lines, self.content_offset, holder)
        return holder.children


def setup(app):
    app.add_directive("settings-table", SettingsTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

"""Sphinx configuration for dserver-notification-plugin.

The docs build needs only Sphinx (and sphinx-rtd-theme if available): the
settings table in configuration.rst is checked against config.py, loaded by
file path, and the HTTP API is described by hand, so neither dservercore nor
the plugin must be installed.
"""
import pathlib
import sys
import tomllib
from datetime import date

from sphinx.util import logging

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


logger = logging.getLogger(__name__)


def check_settings_table(app):
    """configuration.rst holds the settings table as rendered from config.py
    (committed, so that it reads on GitHub too); a stale one is a warning,
    which fails ``make docs`` (-W)."""
    message = settings_table.stale_message()
    if message:
        logger.warning(message)


def setup(app):
    app.connect("builder-inited", check_settings_table)
    return {"parallel_read_safe": True, "parallel_write_safe": True}

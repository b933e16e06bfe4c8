"""Keep the plugin's tables out of dservercore's Flask-Migrate (Alembic) workflow.

dservercore tells operators to run ``flask db init``, ``flask db migrate``
and ``flask db upgrade``, and again after each dservercore upgrade. Alembic's
autogenerate compares the database with dservercore's models only; the
plugin's ``notification_*`` tables are not among them, so without a rule it
proposes dropping them, and ``flask db upgrade`` would drop the waiting
events with them. The plugin migrates its own tables (:mod:`.schema`).

The rule goes where the ``migrations/env.py`` that ``flask db init`` writes
looks for it: ``current_app.extensions['migrate'].configure_args``, which
that env.py passes to Alembic's ``context.configure``. dservercore creates
its ``Migrate`` only after the extensions' ``init_app``, so the rule is added
whenever an app context is pushed (every ``flask db`` command pushes one
before env.py runs); it is added once and kept alongside any rule an
operator configured.
"""
from flask import appcontext_pushed

from .db.tables import metadata

#: Alembic's hooks, in the order ``context.configure`` takes them.
HOOKS = ("include_name", "include_object")


def plugin_table_names():
    """The tables the plugin creates and migrates itself."""
    return frozenset(metadata.tables)


def include_name(name, type_, parent_names):
    """Alembic ``include_name``: do not even reflect the plugin's tables."""
    if type_ == "table":
        return name not in plugin_table_names()
    return parent_names.get("table_name") not in plugin_table_names()


def include_object(object_, name, type_, reflected, compare_to):
    """Alembic ``include_object``: nothing of a plugin table (nor its indexes
    and columns) is compared, created or dropped."""
    table = object_ if type_ == "table" else getattr(object_, "table", None)
    table_name = name if type_ == "table" else getattr(table, "name", None)
    return table_name not in plugin_table_names()


_RULES = {"include_name": include_name, "include_object": include_object}


def exclude_plugin_tables(app):
    """Register the rules for ``app``'s Flask-Migrate as soon as it exists.

    Returns the signal receiver: the caller keeps it, since the signal holds
    it only weakly (a strong hold would keep every app ever made alive).
    """
    def add_rules(sender, **_):
        add_rules_to(sender)
    appcontext_pushed.connect(add_rules, sender=app, weak=True)
    add_rules_to(app)  # an app that set up Flask-Migrate before the plugin
    return add_rules


def add_rules_to(app):
    """Add the rules to the configure arguments of ``app``'s Flask-Migrate, if
    it has one; an operator's own rule keeps its say (both must agree)."""
    migrate = app.extensions.get("migrate")
    if migrate is None:
        return
    arguments = migrate.configure_args
    for hook in HOOKS:
        existing = arguments.get(hook)
        if existing is None:
            arguments[hook] = _RULES[hook]
        elif not getattr(existing, "keeps_plugin_tables", False) \
                and existing is not _RULES[hook]:
            arguments[hook] = _both(existing, _RULES[hook])


def _both(theirs, ours):
    def rule(*args):
        return ours(*args) and theirs(*args)
    rule.keeps_plugin_tables = True
    return rule

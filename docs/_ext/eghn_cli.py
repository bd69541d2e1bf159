"""``.. eghn-cli-help:: [SUBCOMMAND ...]`` renders the ``--help`` text of the ``eghn`` command.

The text is produced at build time from the real argument parser, so the CLI reference can
never drift from the code. The parser is taken from ``eghn.cli.build_parser()`` when that
function exists; otherwise ``eghn.cli.main([... , "--help"])`` is run and its output captured.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import os
from typing import ClassVar

from docutils import nodes
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)


def cli_help(words: list[str]) -> str:
    cli = importlib.import_module("eghn.cli")
    # a fixed width keeps the rendered text independent of the terminal of the build
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "90"
    try:
        parser = cli.build_parser() if hasattr(cli, "build_parser") else None
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            if parser is not None:
                parser.parse_args([*words, "--help"])
            else:
                cli.main([*words, "--help"])
        return out.getvalue().rstrip()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


class CliHelp(SphinxDirective):
    optional_arguments = 10
    has_content = False

    def run(self) -> list[nodes.Node]:
        words = list(self.arguments)
        try:
            text = cli_help(words)
        except Exception as exc:  # report any failure as a build warning at this line
            logger.warning("eghn %s --help failed: %s", " ".join(words), exc,
                           location=self.get_location())
            return []
        if not text:
            logger.warning("eghn %s --help printed nothing", " ".join(words), location=self.get_location())
            return []
        block = nodes.literal_block(text, text, language="text")
        return [block]


def dataset_cli_help(module: str) -> str:
    """Help of the ``eghn data`` subcommand that ``module.register_cli`` adds."""
    import argparse

    mod = importlib.import_module(module)
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "90"
    try:
        root = argparse.ArgumentParser(prog="eghn data")
        sub = root.add_subparsers()
        parser = mod.register_cli(sub)
        if parser is None:  # register_cli may not return its parser: take the one it added
            parser = next(iter(sub.choices.values()))
        return parser.format_help().rstrip()
    finally:
        if old is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = old


class DatasetCliHelp(SphinxDirective):
    """``.. eghn-dataset-cli-help:: eghn.data.mocap``: help of ``eghn data <name>``."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        try:
            text = dataset_cli_help(self.arguments[0])
        except Exception as exc:
            logger.warning("cannot render the command line of %s: %s", self.arguments[0], exc,
                           location=self.get_location())
            return []
        return [nodes.literal_block(text, text, language="text")]


# ---------------------------------------------------------------------------------------
# configuration keys


def config_keys(module: str, name: str) -> list[tuple[str, object, str]]:
    """``(key, default, comment)`` of every entry of the dict literal ``module.name``.

    The comment is the ``# ...`` text at the end of the entry's line in the source.
    """
    import ast
    import inspect
    import tokenize

    mod = importlib.import_module(module)
    values = getattr(mod, name)
    src = inspect.getsource(mod)
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(src).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    rows = []
    for node in ast.walk(ast.parse(src)):
        target = getattr(node, "target", None) or (node.targets[0] if isinstance(node, ast.Assign) else None)
        if isinstance(node, ast.Assign | ast.AnnAssign) and isinstance(target, ast.Name) and target.id == name:
            for key in node.value.keys:
                k = ast.literal_eval(key)
                rows.append((k, values[k], comments.get(key.lineno, "")))
    return rows


class ConfigKeys(SphinxDirective):
    """``.. eghn-config-keys:: eghn.train.config TRAIN_DEFAULTS`` renders a table of the keys.

    Descriptions come from the comment at the end of each entry in the source; lines
    ``key: description`` in the directive's content fill in (or replace) them. A key without
    any description is a build warning, so every key stays documented.
    """

    required_arguments = 2
    has_content = True
    option_spec: ClassVar[dict] = {"prefix": lambda s: s.strip()}

    def run(self) -> list[nodes.Node]:
        module, name = self.arguments
        extra = {}
        for line in self.content:
            if ":" in line:
                k, v = line.split(":", 1)
                extra[k.strip()] = v.strip()
        try:
            rows = config_keys(module, name)
        except Exception as exc:
            logger.warning("cannot read %s.%s: %s", module, name, exc, location=self.get_location())
            return []
        prefix = self.options.get("prefix", "")
        table = nodes.table()
        group = nodes.tgroup(cols=3)
        table += group
        for width in (22, 14, 64):
            group += nodes.colspec(colwidth=width)
        head = nodes.thead()
        group += head
        body = nodes.tbody()
        group += body

        def row(cells: list[nodes.Node], into: nodes.Element) -> None:
            r = nodes.row()
            for cell in cells:
                entry = nodes.entry()
                entry += cell
                r += entry
            into += r

        row([nodes.paragraph(text=t) for t in ("key", "default", "meaning")], head)
        for key, default, comment in rows:
            text = extra.get(key, comment)
            if not text:
                logger.warning("configuration key %s.%s has no description", name, key,
                               location=self.get_location())
            k = nodes.paragraph()
            k += nodes.literal(text=prefix + key)
            d = nodes.paragraph()
            d += nodes.literal(text=repr(default) if not isinstance(default, bool) else str(default).lower())
            # descriptions are reST (``literals``, :func:`roles`): parse them inline
            meaning = nodes.paragraph()
            parsed, messages = self.state.inline_text(text, self.lineno)
            meaning += parsed
            meaning += messages
            row([k, d, meaning], body)
        return [table]


def setup(app):
    app.add_directive("eghn-cli-help", CliHelp)
    app.add_directive("eghn-dataset-cli-help", DatasetCliHelp)
    app.add_directive("eghn-config-keys", ConfigKeys)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}

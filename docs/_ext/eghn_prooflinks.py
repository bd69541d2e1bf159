"""Link the lemmas of the proofs to the tests that check them, and back.

The proofs (``proofs/*.md``) name their tests as inline code, e.g.
```tests/test_theorem2.py::test_centering_lemma```. This extension

* turns every such inline code span, on any page, into a link to the test's entry on the
  page holding the ``.. eghn-test-index::`` directive, when a proof names that test (the
  index lists only those; a test named on other pages only stays plain code);
* remembers which section (lemma) named which test;
* renders, at the directive, a table *test -> lemmas* and the source of every test, read
  from the repository with :mod:`ast`, each entry linking back to its lemmas.

A test that is named but cannot be found in the repository is a build warning (an error
under ``sphinx-build -W``), so the proofs cannot point at tests that do not exist. Set
``eghn_missing_tests = "info"`` in ``conf.py`` to report them without failing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from docutils import nodes
from sphinx.transforms import SphinxTransform
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

TEST_ID = re.compile(r"^(tests/[\w/]+\.py)::(test_\w+)$")
LEMMA_TITLE = re.compile(r"^(Lemma|Corollary|Theorem|Proof)\b")


def anchor(test_id: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", test_id.lower()).strip("-")


class eghn_testref(nodes.Inline, nodes.Element):
    """A test id in the text, resolved to a link after all documents are read."""


class eghn_testindex(nodes.General, nodes.Element):
    """Where the test -> lemma table and the test sources are rendered."""


class CollectTestRefs(SphinxTransform):
    default_priority = 500

    def apply(self) -> None:
        env = self.env
        store = _store(env)
        for lit in list(self.document.findall(nodes.literal)):
            text = lit.astext().strip()
            if not TEST_ID.match(text):
                continue
            section = _enclosing_section(lit)
            if section is not None and section["ids"]:
                title = section[0].astext() if isinstance(section[0], nodes.title) else ""
                if LEMMA_TITLE.match(title):
                    rec = {"test": text, "docname": env.docname, "id": section["ids"][0],
                           "title": title}
                    if rec not in store:
                        store.append(rec)
            ref = eghn_testref(test=text)
            ref += lit.deepcopy()
            lit.replace_self(ref)


def _enclosing_section(node: nodes.Node) -> nodes.section | None:
    while node is not None and not isinstance(node, nodes.section):
        node = node.parent
    return node


def _store(env) -> list[dict]:
    if not hasattr(env, "eghn_test_refs"):
        env.eghn_test_refs = []
    return env.eghn_test_refs


class TestIndexDirective(SphinxDirective):
    has_content = False

    def run(self) -> list[nodes.Node]:
        self.env.eghn_test_index_doc = self.env.docname
        return [eghn_testindex()]


def _find_test(root: Path, test_id: str) -> tuple[str, int, int, str] | None:
    """Return (path, first line, last line, source) of a test function, or ``None``."""
    match = TEST_ID.match(test_id)
    path = root / match.group(1)
    if not path.is_file():
        return None
    text = path.read_text(encoding="utf-8")
    tree = ast.parse(text)
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == match.group(2):
            first = min([node.lineno] + [d.lineno for d in node.decorator_list])
            lines = text.splitlines()[first - 1 : node.end_lineno]
            return match.group(1), first, node.end_lineno, "\n".join(lines)
    return None


def _resolve(app, doctree: nodes.document, fromdocname: str) -> None:
    env = app.env
    index_doc = getattr(env, "eghn_test_index_doc", None)
    builder = app.builder
    indexed = {rec["test"] for rec in _store(env)}
    for ref in list(doctree.findall(eghn_testref)):
        if index_doc is None or ref["test"] not in indexed:
            ref.replace_self(ref.children)
            continue
        uri = builder.get_relative_uri(fromdocname, index_doc) + "#" + anchor(ref["test"])
        link = nodes.reference("", "", internal=True, refuri=uri, reftitle="source of this test")
        link += ref.children
        ref.replace_self(link)
    for placeholder in list(doctree.findall(eghn_testindex)):
        placeholder.replace_self(_render_index(app, fromdocname))


def _render_index(app, fromdocname: str) -> list[nodes.Node]:
    env = app.env
    root = (Path(app.confdir) / app.config.eghn_tests_root).resolve()
    refs: dict[str, list[dict]] = {}
    for rec in _store(env):
        refs.setdefault(rec["test"], []).append(rec)

    def lemma_links(recs: list[dict]) -> nodes.paragraph:
        para = nodes.paragraph()
        for k, rec in enumerate(recs):
            if k:
                para += nodes.Text("; ")
            uri = app.builder.get_relative_uri(fromdocname, rec["docname"]) + "#" + rec["id"]
            link = nodes.reference("", "", internal=True, refuri=uri)
            link += nodes.Text(f"{env.titles[rec['docname']].astext()}, {rec['title']}"
                               if rec["docname"] in env.titles else rec["title"])
            para += link
        return para

    table = nodes.table(classes=["eghn-test-table"])
    group = nodes.tgroup(cols=2)
    table += group
    group += nodes.colspec(colwidth=45)
    group += nodes.colspec(colwidth=55)
    head = nodes.thead()
    group += head
    row = nodes.row()
    for label in ("Test", "Lemmas it checks"):
        entry = nodes.entry()
        entry += nodes.paragraph(text=label)
        row += entry
    head += row
    body = nodes.tbody()
    group += body
    sources = []
    for test_id in sorted(refs):
        found = _find_test(root, test_id)
        row = nodes.row()
        entry = nodes.entry()
        para = nodes.paragraph()
        link = nodes.reference("", "", internal=True, refuri="#" + anchor(test_id))
        link += nodes.literal(text=test_id)
        para += link
        entry += para
        row += entry
        entry = nodes.entry()
        entry += lemma_links(refs[test_id])
        row += entry
        body += row

        block = nodes.container(ids=[anchor(test_id)], classes=["eghn-test-source"])
        block += nodes.rubric(text=test_id)
        checks = nodes.paragraph()
        checks += nodes.Text("Checks: ")
        checks += lemma_links(refs[test_id]).children
        block += checks
        if found is None:
            msg = f"the proofs name {test_id}, which does not exist under {root}"
            if app.config.eghn_missing_tests == "warn":
                logger.warning(msg, location=fromdocname)
            else:
                logger.info(msg)
            block += nodes.paragraph(text="This test is not in the repository yet.")
        else:
            path, first, last, src = found
            block += nodes.paragraph(text=f"{path}, lines {first}-{last}:")
            code = nodes.literal_block(src, src, language="python")
            code["linenos"] = True
            code["highlight_args"] = {"linenostart": first}
            block += code
        sources.append(block)
    return [table, *sources]


def _purge(app, env, docname: str) -> None:
    env.eghn_test_refs = [r for r in _store(env) if r["docname"] != docname]
    if getattr(env, "eghn_test_index_doc", None) == docname:
        env.eghn_test_index_doc = None


def _merge(app, env, docnames, other) -> None:
    store = _store(env)
    for rec in _store(other):
        if rec["docname"] in docnames and rec not in store:
            store.append(rec)
    if getattr(other, "eghn_test_index_doc", None):
        env.eghn_test_index_doc = other.eghn_test_index_doc


def _env_updated(app, env) -> list[str]:
    # the index page depends on every page that names a test: always rewrite it
    doc = getattr(env, "eghn_test_index_doc", None)
    return [doc] if doc else []


def setup(app):
    app.add_config_value("eghn_tests_root", "..", "env")
    app.add_config_value("eghn_missing_tests", "warn", "env")
    app.add_node(eghn_testref)
    app.add_node(eghn_testindex)
    app.add_transform(CollectTestRefs)
    app.add_directive("eghn-test-index", TestIndexDirective)
    app.connect("doctree-resolved", _resolve)
    app.connect("env-purge-doc", _purge)
    app.connect("env-merge-info", _merge)
    app.connect("env-updated", _env_updated)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True,
            "env_version": 1}

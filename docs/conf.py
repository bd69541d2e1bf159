"""Sphinx configuration for the eghn documentation.

Build (offline, warnings are errors)::

    sphinx-build -W --keep-going -b html docs docs/_build/html

Environment variables:

``EGHN_DOCS_INTERSPHINX=1``
    link to the Python, NumPy, PyTorch, e3nn and MDAnalysis docs (needs the network at
    build time, so it is off by default and in CI).
``EGHN_GALLERY=fast|full|off``
    ``fast`` (default) runs every gallery script in its reduced CPU version, ``full`` runs
    the complete reproductions (GPU; ``tox -e gpu``), ``off`` renders the scripts without
    running them. Scripts read the same variable through :func:`os.environ`.
``EGHN_MATHJAX=auto|cdn|DIR``
    where MathJax comes from. ``auto`` (default) uses a local copy when one is installed
    (Debian's ``libjs-mathjax`` in ``/usr/share/javascript/mathjax``) and copies the parts
    the site needs into ``_static/mathjax``; otherwise, and with ``cdn``, the page loads
    MathJax from Sphinx's default CDN. ``DIR`` names another MathJax 2 installation.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(DOCS / "scripts"))
sys.path.insert(0, str(DOCS / "_ext"))
sys.path.insert(0, str(ROOT))

import eghn  # noqa: E402


# -- project -------------------------------------------------------------------------
def _commit() -> str:
    """The commit of the source tree the site is built from (for the citation and the status)."""
    import subprocess

    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                             check=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() or "unknown"


eghn_commit = _commit()
rst_epilog = f".. |commit| replace:: {eghn_commit[:12]}\n"

project = "eghn"
author = "eghn developers"
copyright = "2026, eghn developers"
release = eghn.__version__
version = ".".join(release.split(".")[:2])

# -- general -------------------------------------------------------------------------
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "myst_parser",
    "sphinx_gallery.gen_gallery",
    "matplotlib.sphinxext.plot_directive",
    "eghn_prooflinks",
    "eghn_cli",
    "eghn_autosummary_fix",
    "eghn_results",
    "eghn_bench",
    "eghn_status",
    "eghn_citation",
    "sphinx_copybutton",
]
templates_path = ["_templates"]
exclude_patterns = ["_build", "_generated", "Thumbs.db", ".DS_Store", "auto_examples/*.ipynb",
                    "auto_examples/**/*.ipynb", "auto_examples/**/*.py", "auto_examples/*.py"]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
default_role = "py:obj"

# -- autodoc / autosummary / napoleon ------------------------------------------------
autosummary_generate = True
autosummary_ignore_module_all = False  # document exactly the names in each ``__all__``
autosummary_imported_members = True
autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_typehints_format = "short"
autodoc_inherit_docstrings = False
napoleon_google_docstring = True
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_custom_sections = ["Shapes", ("Equations", "notes_style")]

# -- proofs <-> tests links (docs/_ext/eghn_prooflinks.py) ---------------------------
eghn_tests_root = ".."
# a test named in the proofs but missing from tests/ fails the build; "info" only reports it
eghn_missing_tests = os.environ.get("EGHN_DOCS_MISSING_TESTS", "warn")

# -- MyST (the proofs are Markdown with LaTeX) ---------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_dmath_double_inline = True
myst_heading_anchors = 3

# -- intersphinx (network at build time: opt-in) -------------------------------------
if os.environ.get("EGHN_DOCS_INTERSPHINX", "0") == "1":
    intersphinx_mapping = {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
        "torch": ("https://pytorch.org/docs/stable", None),
        "e3nn": ("https://docs.e3nn.org/en/stable", None),
        "MDAnalysis": ("https://docs.mdanalysis.org/stable", None),
    }
else:
    intersphinx_mapping = {}
    intersphinx_disabled_reftypes = ["*"]

# -- MathJax: a local copy when one is installed, so the site works offline -----------
_MATHJAX_PARTS = [
    "MathJax.js",
    "config/TeX-AMS_CHTML.js",
    "config/local",
    "extensions",
    "jax/input/TeX",
    "jax/output/CommonHTML",
    "jax/element",
    "localization/en",
    "fonts/HTML-CSS/TeX/woff",
]


def _find_mathjax() -> Path | None:
    choice = os.environ.get("EGHN_MATHJAX", "auto")
    if choice == "cdn":
        return None
    candidates = [Path(choice)] if choice != "auto" else [Path("/usr/share/javascript/mathjax"),
                                                          Path("/usr/share/mathjax")]
    for cand in candidates:
        if (cand / "MathJax.js").is_file():
            return cand
    if choice != "auto":
        raise FileNotFoundError(f"EGHN_MATHJAX={choice!r}: no MathJax.js in that directory")
    return None


_MATHJAX_DIR = _find_mathjax()
if _MATHJAX_DIR is not None:
    # MathJax 2 layout (Debian's libjs-mathjax); the path is relative to _static.
    mathjax_path = "mathjax/MathJax.js?config=TeX-AMS_CHTML"
    mathjax2_config = {
        # MyST marks its pages ``mathjax_ignore`` and relies on the ``math`` class of each
        # formula being processed (its MathJax 3 setting); the same for MathJax 2:
        "tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]],
                    "processEscapes": True,
                    "processClass": "tex2jax_process|mathjax_process|math|output_area",
                    "ignoreClass": "tex2jax_ignore|mathjax_ignore|document"},
        "TeX": {"equationNumbers": {"autoNumber": "AMS"}},
        "CommonHTML": {"linebreaks": {"automatic": True}},
        "showMathMenu": False,
        "messageStyle": "none",
    }


def _copy_mathjax(app, exception) -> None:
    if exception is not None or _MATHJAX_DIR is None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / "mathjax"
    for part in _MATHJAX_PARTS:
        src = _MATHJAX_DIR / part
        if not src.exists():
            continue
        target = dest / part
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, dirs_exist_ok=True)  # follows Debian's font symlinks
        else:
            shutil.copyfile(src, target)


# -- sphinx-gallery ------------------------------------------------------------------
GALLERY_MODE = os.environ.setdefault("EGHN_GALLERY", "fast")
if GALLERY_MODE not in {"fast", "full", "off"}:
    raise ValueError(f"EGHN_GALLERY must be fast, full or off, got {GALLERY_MODE!r}")



#: gallery scripts that read the CMU motion-capture data
_MOCAP_EXAMPLES = ("plot_02_mocap_clusters.py", "plot_table2_mocap.py", "plot_table4_ablations.py")


def _mocap_available() -> bool:
    """The motion-capture examples need the CMU run data (shared/data/mocap or $EGHN_DATA_DIR)."""
    from eghn.data import MocapDataset

    try:
        MocapDataset(split="test", subject="run")
    except FileNotFoundError as exc:  # no data on this machine: leave that tutorial out, say so
        print(f"eghn docs: motion-capture data not found ({exc}); "
              "the gallery is built without " + ", ".join(_MOCAP_EXAMPLES), file=sys.stderr)
        return False
    return True


_IGNORE = [r"__init__\.py", r"_helpers\.py"]
_HAVE_MOCAP = GALLERY_MODE == "off" or _mocap_available()
if not _HAVE_MOCAP:
    _IGNORE += [name.replace(".", r"\.") for name in _MOCAP_EXAMPLES]
else:
    tags.add("mocap_data")  # noqa: F821 - ``tags`` is provided by Sphinx

# Links to the motion-capture experiment pages exist only when those pages are built; an
# ``.. only::`` block would still resolve (and warn about) its references, so the list is
# written here and included by results.rst.
_GENERATED = DOCS / "_generated"
_GENERATED.mkdir(exist_ok=True)
(_GENERATED / "mocap_links.rst").write_text(
    "The motion-capture tables:\n\n"
    "* :ref:`sphx_glr_auto_examples_experiments_plot_table2_mocap.py`\n"
    "* :ref:`sphx_glr_auto_examples_experiments_plot_table4_ablations.py`\n"
    if _HAVE_MOCAP and GALLERY_MODE != "off" else
    "The motion-capture tables are built only where the CMU data are available "
    "(see :doc:`user_guide/mocap`).\n"
)

sphinx_gallery_conf = {
    "examples_dirs": [str(ROOT / "gallery")],
    "gallery_dirs": ["auto_examples"],
    # every script whose name starts with ``plot_`` runs; ``off`` runs none
    "filename_pattern": r"/plot_" if GALLERY_MODE != "off" else r"^$",
    "ignore_pattern": "(" + "|".join(_IGNORE) + ")",
    "within_subsection_order": "FileNameSortKey",
    # tutorials first, then the paper's tables
    # (paths relative to this file, as sphinx-gallery compares them)
    "subsection_order": ["../gallery/tutorials", "../gallery/experiments"],
    "abort_on_example_error": True,
    "only_warn_on_example_error": False,
    "download_all_examples": False,
    "remove_config_comments": True,
    "matplotlib_animations": False,
    "image_scrapers": ("matplotlib",),
    "reset_modules": ("matplotlib", "seaborn"),
    "show_memory": False,
    # the computation-time pages load jQuery/DataTables from a CDN: not offline-safe
    "write_computation_times": False,
    "plot_gallery": "True" if GALLERY_MODE != "off" else "False",
    # "Examples using X" on every API page (the minigallery of the autosummary templates)
    "backreferences_dir": "gen_modules/backreferences",
    "doc_module": ("eghn",),
}

# -- matplotlib plot directive (figures drawn by code at build time) -----------------
plot_include_source = False
plot_html_show_source_link = False
plot_html_show_formats = False
plot_formats = [("png", 110)]
plot_rcparams = {"figure.autolayout": False}
plot_basedir = str(DOCS)

# -- copy button: copy commands without their prompts or output ---------------------
copybutton_prompt_text = r">>> |\.\.\. |\$ "
copybutton_prompt_is_regexp = True
copybutton_exclude = ".linenos, .gp, .go"

# -- HTML ----------------------------------------------------------------------------
html_theme = "furo"
html_static_path = ["_static"]
html_css_files = ["eghn.css"]
html_title = f"eghn {release}"
html_theme_options = {
    "navigation_with_keys": True,
    "top_of_page_buttons": [],
}
html_show_sourcelink = False


def setup(app) -> None:
    app.connect("build-finished", _copy_mathjax)

"""Which public objects of eghn have a runnable example (a doctest) in their docstring.

Walks every module of the package, takes the names of its ``__all__`` that are defined there
(re-exports are counted where they are defined), and prints the classes and functions whose
docstring, or for a class also its ``__init__`` docstring, holds no ``>>>`` line. The doctests
themselves run with ``pytest --doctest-modules eghn`` (``pyproject.toml``).

Usage::

    python docs/scripts/api_examples.py [--list]    # exit 0; the counts on stdout
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import pkgutil
import sys

import eghn

__all__ = ["main", "public_objects"]


def public_objects() -> list[tuple[str, object]]:
    """``(module.name, object)`` of every class and function named in the ``__all__`` of a
    public module and defined in that module."""
    out = []
    for info in pkgutil.walk_packages(eghn.__path__, "eghn."):
        if any(part.startswith("_") for part in info.name.split(".")):  # private modules
            continue
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional dependency is missing
            continue
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name, None)
            if (inspect.isclass(obj) or inspect.isfunction(obj)) and obj.__module__ == module.__name__:
                out.append((f"{module.__name__}.{name}", obj))
    return out


def _has_example(obj: object) -> bool:
    docs = [inspect.getdoc(obj) or ""]
    if inspect.isclass(obj):
        docs.append(inspect.getdoc(obj.__init__) or "" if "__init__" in vars(obj) else "")
    return any(">>>" in d for d in docs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--list", action="store_true", help="list the objects without an example")
    args = parser.parse_args(argv)
    objects = public_objects()
    missing = [name for name, obj in objects if not _has_example(obj)]
    print(f"{len(objects) - len(missing)} of {len(objects)} public classes and functions have an example; "
          f"{len(missing)} have none")
    if args.list:
        print("\n".join(missing))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""bot/ has no import cycle, counting the imports inside functions too: an
import deferred into a function still ties its module to the other, and a
cycle hidden that way is one all the same. Read with ast from the sources.

And the zip's `__main__.py` (bot/zip_main.py), the one file that must work
when the rest of a version does not, needs only the standard library and
bot/probation.py, which imports nothing of ours."""

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = "bot"


def module_name(path: Path) -> str:
    """`bot.x` for bot/x.py; the package itself for bot/__init__.py."""
    return PACKAGE if path.stem == "__init__" else f"{PACKAGE}.{path.stem}"


def imported(source: str, modules: set[str], top_level_only: bool = False) -> set[str]:
    """The names of `modules` that `source` imports, anywhere in it (or only
    in its module-level statements), however the import is spelled."""
    tree = ast.parse(source)
    nodes = tree.body if top_level_only else ast.walk(tree)
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(filter(None, [PACKAGE, node.module])) if node.level else node.module or ""
            # `from bot import layout` imports the module bot.layout; `from bot.layout import Layout`, bot.layout.
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def import_graph(sources: dict[str, str]) -> dict[str, set[str]]:
    """Module -> the modules of the package it imports, from {module: source}."""
    return {module: imported(source, set(sources)) - {module} for module, source in sources.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of `graph` as the path that closes it (first node repeated at
    the end), or None."""
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        visiting.append(node)
        for target in sorted(graph[node]):
            if target in visiting:
                return visiting[visiting.index(target):] + [target]
            if target not in done:
                cycle = visit(target)
                if cycle:
                    return cycle
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if node not in done:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def bot_sources() -> dict[str, str]:
    return {module_name(path): path.read_text(encoding="utf-8") for path in sorted((REPO / PACKAGE).glob("*.py"))}


def test_bot_has_no_import_cycle():
    cycle = find_cycle(import_graph(bot_sources()))
    assert cycle is None, "an import cycle: " + " -> ".join(cycle)


def test_a_cycle_through_an_import_inside_a_function_is_found():
    sources = {
        "bot.a": "from bot import b\n",
        "bot.b": "import json\nfrom bot.c import x\n",
        "bot.c": "def later():\n    from bot import a as again\n",
        "bot.d": "import bot.a\n",
    }

    assert import_graph(sources) == {"bot.a": {"bot.b"}, "bot.b": {"bot.c"}, "bot.c": {"bot.a"}, "bot.d": {"bot.a"}}
    assert find_cycle(import_graph(sources)) == ["bot.a", "bot.b", "bot.c", "bot.a"]
    sources["bot.c"] = "def later():\n    import json\n"
    assert find_cycle(import_graph(sources)) is None


def test_zip_main_imports_only_the_standard_library_and_probation_at_start():
    sources = bot_sources()
    ours = set(sources)

    assert imported(sources["bot.zip_main"], ours, top_level_only=True) == {"bot.probation"}
    assert imported(sources["bot.probation"], ours) == set()
    for module in ("bot.zip_main", "bot.probation"):
        tree = ast.parse(sources[module])
        top = {alias.name.split(".")[0] for node in tree.body if isinstance(node, ast.Import) for alias in node.names}
        top |= {node.module.split(".")[0] for node in tree.body if isinstance(node, ast.ImportFrom) and node.module}
        assert top - {PACKAGE} <= sys.stdlib_module_names, module

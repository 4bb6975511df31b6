"""The layout's import boundaries (ARCHITECTURE.md, "Folders"), read with ast from
every module of ours: imports at module level and inside functions alike.

shared/ ships in the bot zip, so it imports the standard library only. The bot
zip carries no client/, so the CLI may import the bot's HTTP client core and
CAS transport, not the other way round. One documented exception is not an import and so is not seen
here: client/cli.py names the `swarming local` group by the string
"local.cli:local", imported only when that subcommand runs
(client/lazy_group.py), since a CLI install lacks the local stack's
dependencies.
"""

import ast
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: Package -> the modules of ours it may import: a package, or one module of one.
ALLOWED = {
    "shared": {"shared"},
    "bot": {"bot", "shared"},
    "functions": {"functions", "shared"},
    "client": {"client", "shared", "bot.api_client", "bot.cas_transport"},
    "local": {"local", "shared", "functions"},
}
OURS = {*ALLOWED, "tests", "bench"}


def imported(path: Path, source: str) -> list[tuple[int, str, str]]:
    """(line, module, statement) of each import in `source`; a relative import
    is resolved against the package of `path` (relative to the repository)."""
    package = path.parent.parts
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[:len(package) - node.level + 1] if node.level else ()
            module = ".".join([*base, *filter(None, [node.module])])
            # `from bot import cas_transport` imports the module bot.cas_transport.
            names = [alias.name for alias in node.names] if not module or module in OURS else [""]
            modules = [".".join(filter(None, [module, name])) for name in names]
        else:
            continue
        found += [(node.lineno, module, ast.get_source_segment(source, node)) for module in modules]
    return sorted(found)  # ast.walk goes breadth first


def _allowed(module: str, allowed: set[str]) -> bool:
    return any(module == a or module.startswith(a + ".") for a in allowed)


def violations(path: Path, source: str) -> list[str]:
    """`file:line: statement (why)` for each forbidden import in `source`."""
    package = path.parts[0]
    allowed = ALLOWED[package]
    found = []
    for line, module, statement in imported(path, source):
        top = module.partition(".")[0]
        if top in OURS and not _allowed(module, allowed):
            found.append(f"{path}:{line}: {statement} ({package}/ may import only {', '.join(sorted(allowed))})")
        elif top not in OURS and package == "shared" and top not in sys.stdlib_module_names:
            found.append(f"{path}:{line}: {statement} (shared/ is standard library only: the bot zip ships it)")
    return found


def test_every_package_keeps_to_its_imports():
    found = []
    for package in ALLOWED:
        for path in sorted((REPO / package).rglob("*.py")):
            found += violations(path.relative_to(REPO), path.read_text(encoding="utf-8"))
    assert not found, "forbidden imports:\n" + "\n".join(found)


def test_a_forbidden_import_is_named_by_file_and_line_wherever_it_is():
    source = ('"""from functions import store"""\n'
              "import json\n"
              "from bot.cas_transport import SignedUrlTransport\n"
              "from bot import cas_transport\n"
              "def f():\n"
              "    from functions import store\n"
              "    import local.stack\n"
              "    from bot import remote\n"
              "    return 'from local import cli'\n")
    assert violations(Path("client/x.py"), source) == [
        "client/x.py:6: from functions import store (client/ may import only bot.api_client, bot.cas_transport, client, shared)",
        "client/x.py:7: import local.stack (client/ may import only bot.api_client, bot.cas_transport, client, shared)",
        "client/x.py:8: from bot import remote (client/ may import only bot.api_client, bot.cas_transport, client, shared)",
    ]


def test_shared_imports_the_standard_library_only():
    source = "import json\nfrom typing import Any\nimport requests\nfrom . import cas\nfrom .. import bot\n"
    assert violations(Path("shared/x.py"), source) == [
        "shared/x.py:3: import requests (shared/ is standard library only: the bot zip ships it)",
        "shared/x.py:5: from .. import bot (shared/ may import only shared)",
    ]

"""The layer rule of docs/ARCHITECTURE.md, checked on the source: every import (module level and
inside functions) of the four packages points down, and no two files import each other in a ring."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# lowest first: a package may import those before it, never those after it
LAYERS = ("search_spaces", "latency_models", "nas", "dashboard")


def _modules() -> dict[str, Path]:
    """Dotted module name -> file, for every source file of the four packages."""
    out = {}
    for pkg in LAYERS:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            parts = path.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _type_checking_lines(tree: ast.AST) -> set[int]:
    """Line numbers of imports under ``if TYPE_CHECKING:`` (never executed: no cycle at run time)."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            lines |= {n.lineno for b in node.body for n in ast.walk(b) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return lines


def imports_of(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int, bool]]:
    """(imported module of ours, line, executed at run time) for each import in the file, functions
    included. ``from a.b import c`` names module ``a.b.c`` when that is a file, else ``a.b``."""
    tree = ast.parse(path.read_text(), str(path))
    typing_only = _type_checking_lines(tree)
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against this module's package
                pkg = name.split(".")[: len(name.split(".")) - node.level + (path.name == "__init__.py")]
                base = ".".join(pkg + ([base] if base else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        else:
            continue
        for t in targets:
            if t.split(".")[0] in LAYERS:
                out.append((t, node.lineno, node.lineno not in typing_only))
    return out


def _graph():
    known = _modules()
    return known, {m: imports_of(m, p, known) for m, p in known.items()}


def test_every_import_points_down_the_layers():
    known, graph = _graph()
    against = []
    for mod, imps in graph.items():
        mine = LAYERS.index(mod.split(".")[0])
        for target, line, _ in imps:
            if LAYERS.index(target.split(".")[0]) > mine:
                against.append(f"{known[mod].relative_to(ROOT)}:{line} imports {target}")
    assert not against, "imports against the layer rule (docs/ARCHITECTURE.md):\n" + "\n".join(against)


def test_no_file_imports_itself_through_others():
    known, graph = _graph()
    edges = {m: sorted({t for t, _, run in imps if run and t in known and t != m}) for m, imps in graph.items()}
    # a package's __init__ re-exporting its own modules is how packages work; leave those edges out
    edges = {m: [t for t in ts if not (known[t].name == "__init__.py" and m.startswith(t + "."))]
             for m, ts in edges.items()}
    cycles, state, stack = [], {}, []

    def visit(m: str) -> None:  # depth-first search; a grey node met again closes a cycle
        state[m] = "grey"
        stack.append(m)
        for t in edges.get(m, ()):
            if state.get(t) == "grey":
                cycles.append(" -> ".join(stack[stack.index(t):] + [t]))
            elif t not in state:
                visit(t)
        stack.pop()
        state[m] = "black"

    for m in sorted(edges):
        if m not in state:
            visit(m)
    assert not cycles, "file import cycles (move the shared piece to a module both can import):\n" + "\n".join(cycles)


def test_the_walk_sees_lazy_and_relative_imports(tmp_path):
    """The checker itself: an import inside a function and a relative one are both found."""
    src = tmp_path / "m.py"
    src.write_text("def f():\n    from dashboard.data import x\nfrom .ops import count\n")
    known = {"search_spaces.ops": src, "search_spaces.m": src}
    found = {t for t, _, _ in imports_of("search_spaces.m", src, known)}
    assert found == {"dashboard.data", "search_spaces.ops"}


# packages that cost seconds to import: a module imports them at its top, unless the CLI parser
# imports the module (``mbnas --help`` and every command's start stay light; their handlers import
# them when they run). Optional backends go through ``search_spaces.errors.require`` (an install
# hint when absent), never an import statement inside a function.
HEAVY = {"torch", "transformers", "optuna", "safetensors", "tokenizers", "sqlalchemy", "numpy", "pandas", "tqdm", "yaml"}
OPTIONAL = {"ray", "streamlit", "ai_edge_litert", "litert_torch", "playwright", "psycopg2"}


def _startup_modules() -> set[str]:
    """Our modules that building the CLI parser imports (in a fresh interpreter)."""
    import subprocess
    import sys

    code = ("import sys; import nas.cli as c; c.build_parser(); "
            "print('\\n'.join(m for m in sys.modules if m.split('.')[0] in %r))" % (LAYERS,))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True).stdout
    return set(out.split())


def test_heavy_imports_sit_at_module_tops_and_optional_ones_go_through_require():
    startup = _startup_modules()
    assert "nas.cli" in startup and "nas.search.runner" in startup  # the walk found the parser's modules
    wrong = []
    for name, path in _modules().items():
        tree = ast.parse(path.read_text(), str(path))
        typing_only = _type_checking_lines(tree)
        for fn in ast.walk(tree):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for n in ast.walk(fn):
                if not isinstance(n, (ast.Import, ast.ImportFrom)) or getattr(n, "level", 0) or n.lineno in typing_only:
                    continue
                top = (n.names[0].name if isinstance(n, ast.Import) else n.module or "").split(".")[0]
                if top in OPTIONAL:
                    wrong.append(f"{path.relative_to(ROOT)}:{n.lineno}: {top} is optional: require({top!r}, ...)")
                elif top in HEAVY and name not in startup:
                    wrong.append(f"{path.relative_to(ROOT)}:{n.lineno}: {top} inside a function of a module the CLI "
                                 f"parser does not import: import it at the top")
    assert not wrong, "\n".join(wrong)

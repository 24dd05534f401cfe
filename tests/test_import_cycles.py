"""No import cycles inside the divqat package.

The graph is built from the source with ast, not by importing: every ``import`` and
``from ... import`` statement counts, at module level or inside a function (a function-level
import that closes a cycle is still a cycle, only a hidden one). Relative imports are resolved
against the importing module, and ``from pkg import name`` is an edge to ``pkg.name`` when that
is a module, to ``pkg`` otherwise.
"""
import ast
from pathlib import Path

import divqat

ROOT = Path(divqat.__file__).parent

def module_name(path, root=ROOT):
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(tree, name, is_package, modules):
    """The divqat modules that the module ``name`` (its ast ``tree``) imports."""
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in modules else target)
    return {m for m in found if m in modules and m != name}


def import_graph(root=ROOT):
    """{module: set of the package's modules it imports} for every .py file under ``root``."""
    paths = {module_name(p, root): p for p in root.rglob("*.py")}
    return {name: imported_modules(ast.parse(path.read_text(), str(path)), name, path.name == "__init__.py",
                                   paths)
            for name, path in paths.items()}


def strongly_connected(graph):
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, components, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(frozenset(component))
    return components


def shortest_cycle(graph, component):
    """One shortest cycle through the first module (sorted) of ``component``, as a list."""
    start = min(component)
    paths, queue = {start: [start]}, [start]
    for node in queue:
        for child in sorted(graph[node] & component):
            if child == start:
                return paths[node] + [start]
            if child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    raise AssertionError("a strongly connected component has a cycle through each member")


def cycles(graph):
    """Each cycle as text, one for every strongly connected component."""
    return sorted(f"{sorted(c)}: {' -> '.join(shortest_cycle(graph, c))}"
                  for c in strongly_connected(graph))


def test_divqat_has_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles in divqat:\n" + "\n".join(found)


def _write(root, files):
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_the_graph_follows_every_kind_of_import(tmp_path):
    pkg = tmp_path / "pkg"
    _write(pkg, {
        "__init__.py": "thing = 1\n",
        "a.py": "from . import b\nfrom .sub import c as renamed\n",
        "b.py": "import pkg.sub.d\n",
        "sub/__init__.py": "from .c import thing\n",
        "sub/c.py": "def f():\n    from ..a import x\n",
        "sub/d.py": "from pkg import thing\nimport os\n",
    })
    graph = import_graph(pkg)
    assert graph == {
        "pkg": set(),
        "pkg.a": {"pkg.b", "pkg.sub.c"},
        "pkg.b": {"pkg.sub.d"},
        "pkg.sub": {"pkg.sub.c"},
        "pkg.sub.c": {"pkg.a"},  # function-level, relative, two levels up
        "pkg.sub.d": {"pkg"},  # a name, not a module: the package itself
    }
    assert strongly_connected(graph) == [frozenset({"pkg.a", "pkg.sub.c"})]
    assert shortest_cycle(graph, frozenset({"pkg.a", "pkg.sub.c"})) == ["pkg.a", "pkg.sub.c", "pkg.a"]


def test_every_cycle_is_named(tmp_path):
    pkg = tmp_path / "pkg"
    _write(pkg, {"__init__.py": "", "a.py": "from pkg import b\n", "b.py": "def f():\n    import pkg.a\n",
                 "c.py": "from .d import y\n", "d.py": "from . import e\n", "e.py": "from .c import z\n"})
    assert cycles(import_graph(pkg)) == ["['pkg.a', 'pkg.b']: pkg.a -> pkg.b -> pkg.a",
                                         "['pkg.c', 'pkg.d', 'pkg.e']: pkg.c -> pkg.d -> pkg.e -> pkg.c"]

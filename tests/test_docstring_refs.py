"""Every Sphinx-style reference in a docstring (``:func:``, ``:class:``, ``:mod:``, ``:meth:``,
``:attr:``, ``:data:``, ``:exc:``) and every dotted ``streamsig.…`` name in README/docs names
something that exists.

The check is static (``ast``): no module is imported, so it is cheap and needs no optional
extra. Names imported from outside streamsig are taken on trust.
"""
from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "streamsig"
ROLE = re.compile(r":(func|class|mod|meth|attr|data|exc|obj):`([^`]+)`")
DOTTED = re.compile(r"`(streamsig(?:\.\w+)+)(?:\(\))?`")
PATH = re.compile(r"\b((?:streamsig|bench|scripts|tests)/[\w/]+\.(?:py|sh))\b")


@dataclass
class Scope:
    names: dict[str, ast.AST | None] = field(default_factory=dict)  # def/class/assign -> node
    imports: dict[str, str] = field(default_factory=dict)  # local name -> dotted origin
    lazy: bool = False  # module __getattr__: names resolved on first use


def _module_file(dotted: str) -> Path | None:
    parts = dotted.split(".")
    if parts[0] != "streamsig":
        return None
    base = ROOT.joinpath(*parts)
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def _is_package(dotted: str) -> bool:
    return (ROOT.joinpath(*dotted.split(".")) / "__init__.py").is_file()


def _body_scope(body: list[ast.stmt], module: str) -> Scope:
    sc = Scope()
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            sc.names[node.name] = node
            if node.name == "__getattr__":
                sc.lazy = True
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                for n in ast.walk(t):
                    if isinstance(n, ast.Name):
                        sc.names[n.id] = node
                    elif isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self":
                        sc.names[n.attr] = node
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = module if _is_package(module) else module.rsplit(".", 1)[0]
                for _ in range(node.level - 1):
                    pkg = pkg.rsplit(".", 1)[0]
                base = f"{pkg}.{base}" if base else pkg
            for a in node.names:
                sc.imports[a.asname or a.name] = f"{base}.{a.name}"
        elif isinstance(node, ast.Import):
            for a in node.names:
                sc.imports[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
        elif isinstance(node, (ast.If, ast.Try, ast.With)):
            inner = _body_scope([*node.body, *getattr(node, "orelse", []), *getattr(node, "finalbody", []),
                                 *[s for h in getattr(node, "handlers", []) for s in h.body]], module)
            sc.names.update(inner.names)
            sc.imports.update(inner.imports)
    return sc


@cache
def _parsed(dotted: str) -> tuple[ast.Module, Scope] | None:
    path = _module_file(dotted)
    if path is None:
        return None
    tree = ast.parse(path.read_text())
    return tree, _body_scope(tree.body, dotted)


def _class_scope(cls: ast.ClassDef, module: str) -> Scope:
    sc = _body_scope(cls.body, module)
    for fn in cls.body:  # attributes set on self in any method
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for n in ast.walk(fn):
                if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "self" \
                        and isinstance(n.ctx, ast.Store):
                    sc.names[n.attr] = n
    return sc


def resolve(dotted: str, depth: int = 0) -> bool:
    """Whether an absolute dotted name exists (module, or attribute chain inside one)."""
    if depth > 10:
        return False
    if not dotted.startswith("streamsig"):
        return True  # outside the package: taken on trust
    parts = dotted.split(".")
    for cut in range(len(parts), 0, -1):
        mod = ".".join(parts[:cut])
        parsed = _parsed(mod)
        if parsed is None:
            continue
        rest = parts[cut:]
        if not rest:
            return True
        _, sc = parsed
        return _resolve_in(sc, mod, rest, depth)
    return False


def _resolve_in(sc: Scope, mod: str, rest: list[str], depth: int) -> bool:
    head, tail = rest[0], rest[1:]
    if head in sc.imports:
        return resolve(".".join([sc.imports[head], *tail]), depth + 1)
    if _module_file(f"{mod}.{head}") is not None:
        return resolve(".".join([mod, *rest]), depth + 1)
    node = sc.names.get(head)
    if node is None:
        return sc.lazy and not tail
    if not tail:
        return True
    if isinstance(node, ast.ClassDef):
        inner = _class_scope(node, mod)
        if tail[0] in inner.names:
            return True  # deeper attributes of a member are not checked
        # inherited: follow streamsig bases, trust others
        for b in node.bases:
            name = ast.unparse(b)
            if name.split(".")[0] in sc.imports:
                origin = sc.imports[name.split(".")[0]]
                if not origin.startswith("streamsig"):
                    return True
                if resolve(".".join([origin, *name.split(".")[1:], *tail]), depth + 1):
                    return True
            elif name in sc.names and resolve(f"{mod}.{name}.{'.'.join(tail)}", depth + 1):
                return True
        return False
    return True  # attribute of a value: not checked


def _docstrings(tree: ast.Module):
    """(docstring, enclosing class name or None) for the module and every def and class."""
    yield ast.get_docstring(tree) or "", None

    def walk(body: list[ast.stmt], cls: str | None):
        for node in body:
            if isinstance(node, ast.ClassDef):
                yield ast.get_docstring(node) or "", node.name
                yield from walk(node.body, node.name)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                yield ast.get_docstring(node) or "", cls
    yield from walk(tree.body, None)


def check_reference(target: str, module: str, cls: str | None, role: str = "func") -> bool:
    """Whether ``target`` (as written in a role inside ``module``, class ``cls``) resolves.

    A bare ``:meth:``/``:attr:`` in a module docstring may name a member of any class there.
    """
    t = target.lstrip("~!").removesuffix("()")
    if "<" in t:  # "text <target>" form
        t = t.split("<", 1)[1].rstrip(">")
    if t.startswith("."):
        pkg = module if _is_package(module) else module.rsplit(".", 1)[0]
        n = len(t) - len(t.lstrip("."))
        for _ in range(n - 1):
            pkg = pkg.rsplit(".", 1)[0]
        return resolve(f"{pkg}.{t.lstrip('.')}")
    if t.startswith("streamsig"):
        return resolve(t)
    parsed = _parsed(module)
    assert parsed is not None
    _, sc = parsed
    first = t.split(".")[0]
    if (cls is not None and cls in sc.names and first not in sc.names and first not in sc.imports
            and resolve(f"{module}.{cls}.{t}")):
        return True
    if first in sc.names or first in sc.imports:
        return _resolve_in(sc, module, t.split("."), 0)
    if cls is None and role in ("meth", "attr"):
        return any(isinstance(node, ast.ClassDef) and resolve(f"{module}.{name}.{t}")
                   for name, node in sc.names.items())
    return False


def _modules() -> list[str]:
    out = []
    for p in sorted(PKG.rglob("*.py")):
        rel = p.relative_to(ROOT).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append(".".join(parts))
    return out


def unresolved() -> list[str]:
    bad = []
    for mod in _modules():
        parsed = _parsed(mod)
        assert parsed is not None, mod
        tree, _ = parsed
        for doc, cls in _docstrings(tree):
            for role, target in ROLE.findall(doc):
                if not check_reference(target, mod, cls, role):
                    bad.append(f"{mod}: :{role}:`{target}`")
    for md in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]:
        text = md.read_text()
        for name in DOTTED.findall(text):
            if not resolve(name):
                bad.append(f"{md.relative_to(ROOT)}: `{name}`")
        for path in PATH.findall(text):
            if not (ROOT / path).is_file():
                bad.append(f"{md.relative_to(ROOT)}: {path} does not exist")
    return bad


def test_the_checker_catches_a_missing_name() -> None:
    assert check_reference("streamsig.features.spec.FeatureSpec.index", "streamsig.engine", None)
    assert check_reference(".runner", "streamsig.backtest", None)
    assert check_reference("load_bytes", "streamsig.features.state", "FeatureState")
    assert not check_reference("streamsig.features.microprice.fit_table", "streamsig.features.spec", None)
    assert not check_reference("from_bytes", "streamsig.features.state", "FeatureState")
    assert not check_reference(".lane", "streamsig.backtest", None)


def test_docstring_and_doc_references_resolve() -> None:
    bad = unresolved()
    assert not bad, "\n".join(bad)


def test_package_docstring_lists_every_subpackage_and_module() -> None:
    import streamsig

    doc = streamsig.__doc__ or ""
    names = {p.stem for p in PKG.glob("*.py") if p.stem != "__init__"}
    names |= {p.parent.name for p in PKG.glob("*/__init__.py")}
    missing = sorted(n for n in names if f":mod:`streamsig.{n}`" not in doc)
    assert not missing, f"streamsig/__init__.py does not mention {missing}"

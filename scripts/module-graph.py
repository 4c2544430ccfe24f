#!/usr/bin/env python3
"""Checks that the crate's modules form no cycle, and prints their graph.

    python3 scripts/module-graph.py          # exit 1 on a cycle
    python3 scripts/module-graph.py --dot    # Graphviz of the module graph
    python3 scripts/module-graph.py --src=DIR  # another tree (e.g. an old commit)

A module depends on another when its code (not its doc comments) names a path
`crate::a::b…`; the path is resolved to the longest module that exists. Tests
(`#[cfg(test)] mod tests`) are left out: they may look anywhere. Re-exports at
the crate root (`crate::Credentials`) are resolved through lib.rs's `pub use`.
"""
import os
import re
import sys

ROOT = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--src=")),
            os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src"))


def module_of(path):
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return "::".join(rel)


def code_without_tests(text):
    cut = re.search(r"^#\[cfg\(test\)\]\s*\n(pub\(crate\) )?mod tests", text, re.M)
    text = text[: cut.start()] if cut else text
    lines = [l for l in text.splitlines() if not l.lstrip().startswith("//")]
    return "\n".join(lines)


modules = {}
for dirpath, _, files in os.walk(ROOT):
    for name in files:
        if name.endswith(".rs"):
            path = os.path.join(dirpath, name)
            modules[module_of(path)] = code_without_tests(open(path, encoding="utf-8").read())

# Root re-exports: name -> module it comes from.
reexports = {}
for m in re.finditer(r"pub use ([\w:]+)::\{([^}]*)\}|pub use ([\w:]+)::(\w+)( as (\w+))?;", modules[""]):
    if m.group(1):
        for item in m.group(2).replace("\n", " ").split(","):
            item = item.strip()
            if item:
                reexports[item] = m.group(1)
    else:
        target = m.group(3) + "::" + m.group(4)
        reexports[m.group(6) or m.group(4)] = target if target in modules else m.group(3)


def resolve(path):
    parts = path.split("::")
    if parts[0] in reexports:
        parts = reexports[parts[0]].split("::") + parts[1:]
    for n in range(len(parts), 0, -1):
        candidate = "::".join(parts[:n])
        if candidate in modules:
            return candidate
    return None


edges = {m: set() for m in modules}
for module, code in modules.items():
    if module == "":
        continue
    for use in re.finditer(r"use crate::\{([^;]*)\};", code, re.S):
        for item in re.split(r",\s*", use.group(1)):
            target = resolve(item.strip().split("::{")[0])
            if target and target != module and not module.startswith(target + "::") and target != "":
                edges[module].add(target)
    for path in re.findall(r"crate::((?:\w+::)*\w+)", code):
        target = resolve(path)
        # A parent module is not a dependency of its own children.
        if target and target != module and target != "" and not module.startswith(target + "::"):
            edges[module].add(target)

if "--dot" in sys.argv:
    print("digraph modules {")
    for a in sorted(edges):
        for b in sorted(edges[a]):
            print(f'  "{a or "crate"}" -> "{b}";')
    print("}")
    sys.exit(0)

# Depth-first search for a cycle.
WHITE, GREY, BLACK = 0, 1, 2
colour = {m: WHITE for m in edges}
stack = []


def visit(m):
    colour[m] = GREY
    stack.append(m)
    for n in sorted(edges[m]):
        if colour[n] == GREY:
            cycle = stack[stack.index(n):] + [n]
            print("module cycle: " + " -> ".join(cycle), file=sys.stderr)
            sys.exit(1)
        if colour[n] == WHITE:
            visit(n)
    stack.pop()
    colour[m] = BLACK


for m in sorted(edges):
    if colour[m] == WHITE:
        visit(m)
for a in sorted(edges):
    if a and edges[a]:
        print(f"{a} -> {', '.join(sorted(edges[a]))}")
print(f"no module cycle among {len(modules)} modules")

#!/usr/bin/env python3
"""Fails when the source files of a crate import each other in a cycle,
or when its top-level modules do (`make lint` runs it on `src/`).

A file is a module (`src/xds/index/mod.rs` is `xds::index`). It imports
another when it names a path into it: `crate::a::b`, `super::x`,
`self::x`, or, in a `mod.rs`/`lib.rs`, one of its own child modules.
Naming an ancestor module (a child using its parent's items) is how Rust
modules are built and is not counted; binaries (`src/bin`) and test
modules (`#[cfg(test)]` and after) are left out.

Usage: module_cycles.py SRC_DIR...   (exit 1 and each cycle printed)
"""
import pathlib
import re
import sys

PATH = re.compile(r"\b(crate|super|self)((?:::\w+)+)")
GROUP = re.compile(r"\buse\s+(crate|super|self)::\{([^;]*)\};", re.S)
COMMENT = re.compile(r"//[^\n]*")


def module_of(src, file):
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return tuple(parts)


def code_of(file):
    text = file.read_text(encoding="utf-8", errors="replace")
    cut = text.find("#[cfg(test)]")
    return COMMENT.sub("", text if cut < 0 else text[:cut])


def references(module, code, children):
    """The absolute path of every path the code names."""
    found = [(head, rest.split("::")[1:]) for head, rest in PATH.findall(code)]
    for head, group in GROUP.findall(code):
        for item in group.split(","):
            names = [n for n in re.split(r"::|[{}\s]", item) if n.isidentifier()]
            if names:
                found.append((head, names))
    for child, rest in re.findall(r"(?<![:\w])([a-z_]\w*)((?:::\w+)+)", code):
        if child in children:
            found.append(("self", [child] + rest.split("::")[1:]))
    base = {"crate": (), "self": module, "super": module[:-1]}
    for head, names in found:
        yield base[head] + tuple(names)


def graph(src):
    files = {}
    for file in src.rglob("*.rs"):
        if "bin" in file.relative_to(src).parts[:1]:
            continue
        files[module_of(src, file)] = file
    edges = {m: set() for m in files}
    for module, file in files.items():
        children = {m[-1] for m in files if len(m) == len(module) + 1 and m[:-1] == module}
        for path in references(module, code_of(file), children):
            while path and path not in files:
                path = path[:-1]
            ancestor = path == module[: len(path)]
            if path and not ancestor:
                edges[module].add(path)
    return edges, files


def cycles(edges):
    """Strongly connected components of more than one node (Tarjan)."""
    order, low, stack, on_stack, found = {}, {}, [], set(), []
    sys.setrecursionlimit(100_000)

    def visit(node):
        order[node] = low[node] = len(order)
        stack.append(node)
        on_stack.add(node)
        for next_node in edges.get(node, ()):
            if next_node not in order:
                visit(next_node)
                low[node] = min(low[node], low[next_node])
            elif next_node in on_stack:
                low[node] = min(low[node], order[next_node])
        if low[node] == order[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(edges):
        if node not in order:
            visit(node)
    return found


def main(dirs):
    failed = False
    for src in map(pathlib.Path, dirs):
        edges, files = graph(src)
        for component in cycles(edges):
            failed = True
            names = ", ".join(str(files[m].relative_to(src)) for m in component)
            print(f"{src}: files import each other in a cycle: {names}")
        top = {}
        for module, targets in edges.items():
            if not module:
                continue
            top.setdefault(module[0], set()).update(
                t[0] for t in targets if t and t[0] != module[0]
            )
        for component in cycles(top):
            failed = True
            print(f"{src}: top-level modules import each other in a cycle: {', '.join(component)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:] or ["src"]))

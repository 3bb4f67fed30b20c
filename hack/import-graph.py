#!/usr/bin/env python3
"""Checks that canopy's module graph has one direction (`make import-graph`).

Reads every file under src/, collects the modules it names (`use crate::...`,
`use super::...` and inline `crate::a::b::item` paths), and reports:

- cycles between files, ignoring a file's uses of its own ancestors (a `mod.rs`
  declares and calls its children, and a child naming its parent's types is the normal
  shape of a Rust module tree, not a cycle worth breaking);
- layer violations between top-level modules: `api` names no other module, `forest`
  names no `controllers`, `webhooks` or `cli`, and `webhooks` and `controllers` do not
  name each other.

Test-only code (`#[cfg(test)] mod x { ... }` blocks and `#[cfg(test)] mod x;` files) is
left out: tests may reach anywhere. Prints each finding and exits 1 if there is any;
`--graph` prints every edge too. A regex reader, not a Rust parser: good enough for this
codebase's `use` style.
"""

import os
import re
import sys
from collections import defaultdict

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "src")

# (from, to): top-level modules `from` must not name.
FORBIDDEN = [
    ("api", "*"),
    ("forest", "controllers"),
    ("forest", "webhooks"),
    ("forest", "cli"),
    ("webhooks", "controllers"),
    ("controllers", "webhooks"),
]


def module_of(path):
    """src/a/b.rs -> ('a','b'); src/a/mod.rs -> ('a',); src/lib.rs -> ()."""
    rel = os.path.relpath(path, ROOT)[: -len(".rs")]
    parts = tuple(rel.split(os.sep))
    if parts[-1] == "mod":
        parts = parts[:-1]
    if parts in (("lib",), ("main",)):
        return ()
    return parts


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    # Line comments, but not `//` inside a string literal (URLs): good enough here.
    return re.sub(r'(?m)^((?:[^"\n]|"(?:\\.|[^"\\\n])*")*?)//.*$', r"\1", text)


def strip_test_blocks(text):
    """Removes `#[cfg(test)] mod name { ... }` blocks (brace matching, strings aside)."""
    out, i = [], 0
    pattern = re.compile(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+\w+\s*\{")
    while True:
        m = pattern.search(text, i)
        if not m:
            out.append(text[i:])
            return "".join(out)
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        in_str = False
        while j < len(text) and depth:
            c = text[j]
            if in_str:
                if c == "\\":
                    j += 1
                elif c == '"':
                    in_str = False
            elif c == '"':
                in_str = True
            elif c == "{":
                depth += 1
            elif c == "}":
                depth -= 1
            j += 1
        i = j


def expand_use(tree):
    """`a::{b, c::{d, e}}` -> ['a::b', 'a::c::d', 'a::c::e']."""
    tree = re.sub(r"\s+", "", tree)
    m = re.match(r"^(.*?)\{(.*)\}$", tree)
    if not m:
        return [tree]
    prefix, inner = m.group(1), m.group(2)
    parts, depth, cur = [], 0, ""
    for c in inner:
        if c == "," and depth == 0:
            parts.append(cur)
            cur = ""
            continue
        depth += c == "{"
        depth -= c == "}"
        cur += c
    if cur:
        parts.append(cur)
    return [p for part in parts for p in expand_use(prefix + part)]


def resolve(segments, here, modules):
    """The longest prefix of `segments` (absolute, from the crate root) that is a module."""
    best = None
    for n in range(1, len(segments) + 1):
        if tuple(segments[:n]) in modules:
            best = tuple(segments[:n])
    return best


def absolute(path, here, is_mod_file):
    """`crate::a::b` / `super::x` / `self::x` relative to module `here`."""
    segs = [s for s in path.split("::") if s]
    if not segs:
        return None
    base = list(here)
    if segs[0] == "crate":
        return segs[1:]
    if segs[0] in ("super", "self"):
        # In a non-mod file `self` is the file's module; `super` its parent.
        while segs and segs[0] in ("super", "self"):
            if segs[0] == "super":
                if not base:
                    return None
                base = base[:-1]
            segs = segs[1:]
        return base + segs
    return None


def main():
    files = {}
    test_only = set()
    for dirpath, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                path = os.path.join(dirpath, name)
                files[module_of(path)] = path
    # Binaries (`main.rs`, `cli/kubectl_canopy.rs`) are not modules of the library.
    modules = set(files) - {()}
    for mod, path in files.items():
        text = open(path, encoding="utf-8").read()
        for m in re.finditer(r"#\[cfg\(test\)\]\s*(?:pub(?:\([^)]*\))?\s+)?mod\s+(\w+)\s*;", text):
            test_only.add(mod + (m.group(1),))
    edges = defaultdict(set)
    for mod, path in files.items():
        if mod in test_only or mod == ():
            continue
        text = strip_test_blocks(strip_comments(open(path, encoding="utf-8").read()))
        paths = []
        for m in re.finditer(r"\buse\s+([^;]+);", text):
            paths += expand_use(m.group(1))
        paths += re.findall(r"\b((?:crate|super)(?:::\w+)+)", text)
        for p in paths:
            p = re.sub(r"::\*$", "", p.split(" as ")[0])
            segs = absolute(p, mod, path.endswith("mod.rs"))
            if segs is None:
                continue
            target = resolve(segs, mod, modules)
            if target is None or target == mod:
                continue
            edges[mod].add(target)
    findings = []
    # Layer rules, by top-level module.
    for src, targets in sorted(edges.items()):
        for dst in sorted(targets):
            if src[0] == dst[0]:
                continue
            for a, b in FORBIDDEN:
                if src[0] == a and (b == "*" or dst[0] == b):
                    findings.append(f"layer: {'::'.join(src)} -> {'::'.join(dst)} ({a} must not name {b if b != '*' else 'other modules'})")
    # File cycles, without edges to a file's own ancestors.
    graph = {
        src: {dst for dst in targets if dst != src[: len(dst)]}
        for src, targets in edges.items()
    }
    seen_cycles = set()
    index, low, stack, on_stack, sccs = {}, {}, [], set(), []
    counter = [0]

    def strongconnect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            scc = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                scc.append(w)
                if w == v:
                    break
            if len(scc) > 1:
                sccs.append(scc)

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    for scc in sccs:
        names = sorted("::".join(m) for m in scc)
        key = tuple(names)
        if key in seen_cycles:
            continue
        seen_cycles.add(key)
        # One concrete loop through the component, for the message.
        members = set(scc)
        start = min(scc)
        path, cur, visited = [start], start, {start}
        while True:
            nxt = sorted(w for w in graph[cur] if w in members)
            back = [w for w in nxt if w == start]
            if back and len(path) > 1:
                break
            fresh = [w for w in nxt if w not in visited]
            if not fresh:
                break
            cur = fresh[0]
            visited.add(cur)
            path.append(cur)
        loop = " -> ".join("::".join(m) for m in path + [start])
        findings.append(f"cycle: {loop}   (component: {', '.join(names)})")
    if "--graph" in sys.argv:
        for src, targets in sorted(edges.items()):
            for dst in sorted(targets):
                print(f"{'::'.join(src)} -> {'::'.join(dst)}")
    for f in findings:
        print(f)
    print(
        f"import-graph: {len(files) - 1} files, {sum(len(t) for t in edges.values())} edges, "
        f"{len(findings)} finding(s)"
    )
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Syntax-checks Swift sources with tree-sitter-swift (no Swift toolchain here).

Fails when the parse tree of any file has an ERROR or MISSING node. One
underscored attribute that uniffi emits, `@_documentation(visibility: ...)`,
is not in the tree-sitter grammar; it is removed before parsing (and counted)
so the rest of the file is still checked. Likewise the closure `{ () }` (a
closure whose body is the empty tuple, which uniffi emits for foreign-trait
methods returning nothing, e.g. `PlatformKeystore.deleteKey`) is valid Swift
that the grammar rejects: it is rewritten to the equivalent `{ () -> Void in }`.
Usage: swift_syntax_check.py FILE.swift...
"""
import re
import sys

import tree_sitter_swift
from tree_sitter import Language, Parser

UNDERSCORED = re.compile(r"@_documentation\(visibility:\s*\w+\)")
VOID_CLOSURE = re.compile(r"= \{ \(\) \}")


def errors(tree):
    out, stack = [], [tree.root_node]
    while stack:
        node = stack.pop()
        if node.type == "ERROR" or node.is_missing:
            out.append(node)
            continue
        stack.extend(node.children)
    return out


def main(paths):
    parser = Parser(Language(tree_sitter_swift.language()))
    failed = 0
    for path in paths:
        src = open(path, encoding="utf-8").read()
        stripped, n = UNDERSCORED.subn("", src)
        stripped, v = VOID_CLOSURE.subn("= { () -> Void in }", stripped)
        tree = parser.parse(stripped.encode())
        errs = errors(tree)
        lines = stripped.split("\n")
        if errs:
            failed += 1
            for node in errs[:10]:
                row = node.start_point[0]
                print(f"{path}:{row + 1}: syntax error near: {lines[row].strip()[:100]}")
        print(
            f"{path}: {len(lines)} lines, {len(errs)} syntax errors "
            f"({n} @_documentation attributes skipped, {v} `{{ () }}` closures rewritten)"
        )
    print(f"swift syntax: {len(paths) - failed} passed, {failed} failed")
    return 1 if failed or not paths else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

#!/usr/bin/python3
"""The C block of docs/guide/templates.md is tests/template/guide_example.c
(from its #include down), which ctest builds and runs: fail when they part."""
import os
import re
import sys

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
doc = open(os.path.join(root, "docs/guide/templates.md"), encoding="utf-8").read()
src = open(os.path.join(root, "tests/template/guide_example.c"), encoding="utf-8").read()
code = src[src.index("#include <vial/template.h>"):].rstrip("\n")
blocks = re.findall(r"```c\n(.*?)\n```", doc, re.S)
if code not in blocks:
    print("docs/guide/templates.md's C example differs from tests/template/guide_example.c")
    sys.exit(1)
print("guide example in sync")

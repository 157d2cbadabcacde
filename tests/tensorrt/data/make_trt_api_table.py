"""Regenerate trt_python_api.json: which TensorRT / cuda-python names edgevit uses exist in which version.

The names are the ones tests/tensorrt/_api_walker.py finds in edgevit/tensorrt/ plus :data:`EXTRA`;
each is looked up in NVIDIA's own sources, never guessed:

* TensorRT: the pybind11 binding sources (``python/src/**/*.cpp``: ``py::class_`` / ``py::enum_``
  with their ``.def*`` / ``.value`` chains, base classes, ``export_values``) and the Python package
  ``python/packaging/bindings_wheel/tensorrt/__init__.py`` (``nptype``, ``__version__``) of
  NVIDIA/TensorRT at each tag in :data:`TENSORRT_TAGS`. Needs a git clone with those tags.
* cuda-python: the Cython source ``runtime.pyx`` (``cuda/bindings/runtime.pyx``, or
  ``cuda/cudart.pyx`` before cuda.bindings existed) shipped in the PyPI wheel of each version in
  :data:`CUDA_PYTHON`, generated from NVIDIA/cuda-python's ``runtime.pyx.in`` at that release.
  Get the wheels with ``pip download --no-deps --only-binary :all: cuda-python==12.6.0 ...``.

Only names are stored. Run from the repository root::

    python tests/tensorrt/data/make_trt_api_table.py --tensorrt-git PATH/TO/TensorRT --cuda-wheels DIR
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
OUT = HERE / "trt_python_api.json"

# every 10.x / 11.x tag of NVIDIA/TensorRT from 10.0 GA on (the newest patch tag of each minor)
TENSORRT_TAGS = {
    "10.0": "v10.0.1", "10.1": "v10.1.0", "10.2": "v10.2.0", "10.3": "v10.3.0", "10.4": "v10.4.0",
    "10.5": "v10.5.0", "10.6": "v10.6.0", "10.7": "v10.7.0", "10.8": "v10.8.0", "10.9": "v10.9.0",
    "10.10": "v10.10.0", "10.11": "v10.11", "10.12": "v10.12.0", "10.13": "v10.13.3", "10.14": "v10.14",
    "10.15": "v10.15", "10.16": "v10.16", "11.0": "v11.0", "11.1": "v11.1",
}
# cuda-python version -> (wheel distribution, module, file in the wheel)
CUDA_PYTHON = {
    "12.0.0": ("cuda_python", "cuda.cudart", "cuda/cudart.pyx"),
    "12.6.0": ("cuda_python", "cuda.cudart", "cuda/cudart.pyx"),
    "12.6.2.post1": ("cuda_python", "cuda.bindings.runtime", "cuda/bindings/runtime.pyx"),
    "12.9.10": ("cuda_bindings", "cuda.bindings.runtime", "cuda/bindings/runtime.pyx"),
    "13.0.0": ("cuda_bindings", "cuda.bindings.runtime", "cuda/bindings/runtime.pyx"),
    "13.1.1": ("cuda_bindings", "cuda.bindings.runtime", "cuda/bindings/runtime.pyx"),
}
EXTRA = {
    # looked up by name from edgevit.tensorrt.rules tables (the walker sees getattr(enum, variable))
    "tensorrt": ["BuilderFlag.FP16", "BuilderFlag.BF16", "BuilderFlag.INT8", "BuilderFlag.PREFER_PRECISION_CONSTRAINTS",
                 "HardwareCompatibilityLevel.AMPERE_PLUS", "HardwareCompatibilityLevel.SAME_COMPUTE_CAPABILITY"],
    "cudart": [],
}


# ---------------------------------------------------------------- pybind11 sources
def _strip_comments(src: str) -> str:
    out, i, n = [], 0, len(src)
    while i < n:
        if src.startswith("//", i):
            i = src.find("\n", i) % (n + 1)  # -1 (no newline left) -> n
        elif src.startswith("/*", i):
            i = src.find("*/", i + 2) + 2
        elif src[i] in "\"'" or src.startswith('R"', i):
            j = _skip_string(src, i)
            out.append(src[i:j])
            i = j
        else:
            out.append(src[i])
            i += 1
    return "".join(out)


def _skip_string(s: str, i: int) -> int:
    if s.startswith('R"', i):
        delim = re.match(r'R"([^(\s]*)\(', s[i:]).group(1)
        return s.find(")" + delim + '"', i) + len(delim) + 2
    j = i + 1
    while s[j] != s[i]:
        j += 2 if s[j] == "\\" else 1
    return j + 1


def _balanced(s: str, i: int) -> int:
    """Index after the bracket that closes s[i]."""
    pairs = {"(": ")", "[": "]", "{": "}", "<": ">"}
    stack, j = [pairs[s[i]]], i + 1
    while stack:
        c = s[j]
        if c in "\"'" or s.startswith('R"', j):
            j = _skip_string(s, j)
            continue
        if c in "([{" or (c == "<" and pairs[s[i]] == ">"):
            stack.append(pairs[c])
        elif c == stack[-1]:
            stack.pop()
        j += 1
    return j


def _args(s: str) -> list[str]:
    """Top-level comma-separated arguments of ``s``."""
    args, depth, cur, j = [], 0, [], 0
    while j < len(s):
        c = s[j]
        if c in "\"'":
            k = _skip_string(s, j)
            cur.append(s[j:k])
            j = k
            continue
        depth += (c in "([{") - (c in ")]}")
        if c == "," and depth == 0:
            args.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        j += 1
    return args + (["".join(cur).strip()] if "".join(cur).strip() else [])


_STRING = re.compile(r'^"((?:[^"\\]|\\.)*)"$')
_CALL = re.compile(r"\s*\.\s*(\w+)\s*(?:<[^;(]*?>)?\s*\(")
_MEMBER_CALLS = {"def", "def_static", "def_property", "def_property_readonly", "def_readwrite", "def_readonly",
                 "def_property_static", "def_property_readonly_static", "value", "attr"}


class PybindModule:
    """Classes, enums and their members a pybind11 module defines."""

    def __init__(self):
        self.classes: dict[str, dict] = {}  # python name ("ILogger.Severity") -> cpp, bases, members, parent
        self.cpp: dict[str, str] = {}
        self.vars: dict[str, str] = {}
        self.functions: set[str] = set()

    def _chain(self, s: str, i: int):
        calls = []
        while (m := _CALL.match(s, i)):
            end = _balanced(s, m.end() - 1)
            calls.append((m.group(1), _args(s[m.end():end - 1])))
            i = end
        return calls

    def add_cpp(self, src: str) -> None:
        s = _strip_comments(src)
        for m in re.finditer(r"py::(class_|enum_)\s*<", s):
            targs = _args(s[m.end():_balanced(s, m.end() - 1) - 1])
            rest = re.compile(r"\s*(\w+)?\s*([({])").match(s, _balanced(s, m.end() - 1))
            if not rest:
                continue
            end = _balanced(s, rest.end() - 1)
            args = _args(s[rest.end():end - 1])
            name = _STRING.match(args[1]) if len(args) > 1 else None
            if not name:
                continue
            parent = None if args[0] in ("m", "module") else self.vars.get(args[0])
            qual = f"{parent}.{name.group(1)}" if parent else name.group(1)
            cls = self.classes.setdefault(qual, {"cpp": targs[0], "bases": [], "members": set(), "parent": parent})
            cls["bases"] += targs[1:]
            self.cpp[targs[0]] = qual
            if rest.group(1):
                self.vars[rest.group(1)] = qual
            self._apply(qual, self._chain(s, end))
        for m in re.finditer(r"(?<![\w.:>])(\w+)(?=\s*\.\s*\w+\s*\()", s):  # `var.def(...)`, `m.def(...)`
            if m.group(1) in ("m", "module"):
                for kind, args in self._chain(s, m.end()):
                    if kind in ("def", "attr") and args and _STRING.match(args[0]):
                        self.functions.add(_STRING.match(args[0]).group(1))
            elif m.group(1) in self.vars:
                self._apply(self.vars[m.group(1)], self._chain(s, m.end()))

    def _apply(self, qual: str, calls) -> None:
        cls, values = self.classes[qual], []
        for kind, args in calls:
            if kind in _MEMBER_CALLS and args and _STRING.match(args[0]):
                cls["members"].add(_STRING.match(args[0]).group(1))
                if kind == "value":
                    values.append(_STRING.match(args[0]).group(1))
            elif kind == "export_values":
                if cls["parent"]:
                    self.classes[cls["parent"]]["members"].update(values)
                else:
                    self.functions.update(values)

    def add_python(self, src: str) -> None:
        """Top-level functions, assignments and ``Class.attr = ...`` of the package's __init__.py."""
        tree = ast.parse(re.sub(r"##\w+##", "tensorrt", src))
        for node in ast.walk(tree):
            if isinstance(node, ast.FunctionDef) and node in tree.body:
                self.functions.add(node.name)
            elif isinstance(node, ast.Assign):
                for t in node.targets:
                    if isinstance(t, ast.Name) and node in tree.body:
                        self.functions.add(t.id)
                    elif isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id in self.classes:
                        self.classes[t.value.id]["members"].add(t.attr)

    def _bases(self, qual: str) -> list[str]:
        out = [qual]
        for base in self.classes[qual]["bases"]:
            if self.cpp.get(base) and self.cpp[base] != qual:
                out += self._bases(self.cpp[base])
        return out

    def _resolve(self, dotted: str) -> str | None:
        parts = dotted.split(".")
        cur = parts[0] if parts[0] in self.classes else None
        for part in parts[1:]:
            if cur is None:
                return None
            cur = next((f"{c}.{part}" for c in self._bases(cur) if f"{c}.{part}" in self.classes), None)
        return cur

    def has(self, dotted: str) -> bool:
        if self._resolve(dotted):
            return True
        owner, _, member = dotted.rpartition(".")
        if not owner:
            return dotted in self.functions
        cls = self._resolve(owner)
        return bool(cls) and any(member in self.classes[c]["members"] for c in self._bases(cls))


# ---------------------------------------------------------------- Cython sources
class PyxModule:
    """Top-level functions, classes and class members (enum values, properties) of a .pyx file."""

    def __init__(self, src: str):
        self.names: set[str] = set()
        cls = None
        for line in src.splitlines():
            if m := re.match(r"(?:cdef |cpdef )?class (\w+)", line):
                cls = m.group(1)
                self.names.add(cls)
            elif m := re.match(r"(?:cpdef |cdef )?def (\w+)\s*\(|(\w+)\s*=", line):
                cls = None
                self.names.add(m.group(1) or m.group(2))
            elif line[:1].strip() and not line.startswith(("#", "@")):
                cls = None
            elif cls and (m := re.match(r"    (?:def (\w+)\s*\(|(\w+)\s*=)", line)):
                self.names.add(f"{cls}.{m.group(1) or m.group(2)}")

    def has(self, dotted: str) -> bool:
        return dotted in self.names


# ---------------------------------------------------------------- table
def used_names() -> dict[str, set[str]]:
    sys.path.insert(0, str(ROOT))
    from tests.tensorrt._api_walker import walk_package  # noqa: PLC0415

    names = {"tensorrt": set(EXTRA["tensorrt"]), "cudart": set(EXTRA["cudart"])}
    for use in walk_package(ROOT / "edgevit" / "tensorrt"):
        if not use.dynamic:
            names[use.api].add(use.name)
    return names


def git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout


def tensorrt_table(repo: Path, names: set[str]) -> dict:
    sources, found = {}, {}
    for version, tag in TENSORRT_TAGS.items():
        files = [f for f in git(repo, "ls-tree", "-r", "--name-only", tag, "python/src").split()
                 if f.endswith(".cpp")] + ["python/packaging/bindings_wheel/tensorrt/__init__.py"]
        mod = PybindModule()
        for f in files:
            text = git(repo, "show", f"{tag}:{f}")
            mod.add_python(text) if f.endswith(".py") else mod.add_cpp(text)
        commit = git(repo, "rev-parse", f"{tag}^{{commit}}").strip()
        sources[version] = {"repo": "NVIDIA/TensorRT", "tag": tag, "commit": commit, "files": files}
        found[version] = mod
    note = ("the full `tensorrt` module (built with EXPORT_ALL_BINDINGS; tensorrt_lean / tensorrt_dispatch "
            "lack the builder classes); a version's names are those of its tag's binding sources")
    return {"note": note, "sources": sources,
            "names": {n: {v: found[v].has(n) for v in TENSORRT_TAGS} for n in sorted(names)}}


def cudart_table(wheels: Path, names: set[str]) -> dict:
    sources, found = {}, {}
    for version, (dist, module, member) in CUDA_PYTHON.items():
        wheel = next(iter(sorted(wheels.glob(f"{dist}-{version}-*.whl"))))
        with zipfile.ZipFile(wheel) as zf:
            found[version] = PyxModule(zf.read(member).decode())
        sources[version] = {"repo": "NVIDIA/cuda-python", "package": dist.replace("_", "-"), "version": version,
                            "module": module, "wheel": wheel.name,
                            "sha256": hashlib.sha256(wheel.read_bytes()).hexdigest(), "files": [member]}
    note = ("read from the generated Cython source each PyPI wheel ships (made from NVIDIA/cuda-python's "
            "cuda_bindings/cuda/bindings/runtime.pyx.in at that release; wheels from 13.2 on ship no .pyx, "
            "so they are not in the table); `module` is where the runtime API lives in that version")
    return {"note": note, "sources": sources,
            "names": {n: {v: found[v].has(n) for v in CUDA_PYTHON} for n in sorted(names)}}


def dump(table: dict) -> str:
    """JSON with one name per line, so a diff shows which name changed."""
    lines = ["{"]
    lines.append(f'  "about": {json.dumps(table["about"])},')
    for i, api in enumerate(("tensorrt", "cudart")):
        part = table[api]
        lines.append(f'  "{api}": {{')
        lines.append(f'    "note": {json.dumps(part["note"])},')
        lines.append('    "sources": {')
        for k, (version, source) in enumerate(part["sources"].items()):
            comma = "," if k < len(part["sources"]) - 1 else ""
            lines.append(f"      {json.dumps(version)}: {json.dumps(source)}{comma}")
        lines.append("    },")
        lines.append('    "names": {')
        items = list(part["names"].items())
        for j, (name, row) in enumerate(items):
            lines.append(f"      {json.dumps(name)}: {json.dumps(row)}{',' if j < len(items) - 1 else ''}")
        lines.append("    }")
        lines.append("  }" + ("," if i == 0 else ""))
    lines.append("}")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tensorrt-git", type=Path, required=True, help="a git clone of NVIDIA/TensorRT with its tags")
    ap.add_argument("--cuda-wheels", type=Path, required=True, help="a folder with the cuda-python wheels")
    args = ap.parse_args()
    names = used_names()
    table = {
        "about": ("Names (classes, methods, properties, enum members) of the TensorRT Python API and of cuda-python's "
                  "CUDA runtime module that edgevit/tensorrt uses, per version, looked up in NVIDIA's sources named "
                  "under 'sources' (names only, no code). Made by tests/tensorrt/data/make_trt_api_table.py; "
                  "checked by tests/tensorrt/test_api_names.py. A name is a dotted path under the module "
                  "('BuilderFlag.FP16') or a class member ('IBuilderConfig.set_flag')."),
        "tensorrt": tensorrt_table(args.tensorrt_git, names["tensorrt"]),
        "cudart": cudart_table(args.cuda_wheels, names["cudart"]),
    }
    OUT.write_text(dump(table), encoding="utf-8")
    print(f"wrote {OUT}: {len(table['tensorrt']['names'])} TensorRT and {len(table['cudart']['names'])} cudart names")


if __name__ == "__main__":
    main()

"""Which TensorRT and cuda-python names a source file touches, and on which versions each use can run.

This checks **names, not behaviour**: that ``trt.BuilderFlag.FP16`` or ``config.set_flag`` exists in a
TensorRT version, not that it is called with the right arguments or does what the code expects.

What it reads (``ast`` only, nothing is imported or run):

* chains on the module objects: ``trt.Builder``, ``trt.BuilderFlag.FP16``, ``cudart.cudaMalloc``,
  ``cudart.cudaMemcpyKind.cudaMemcpyHostToDevice``; ``self.trt`` / ``self.cudart`` and names bound
  to ``import_tensorrt()`` / ``import_cudart()`` count as the modules;
* attributes of TensorRT objects: ``config.set_flag`` is ``IBuilderConfig.set_flag``. An object's
  class comes from what it was made by (``trt.Builder(...)``, ``builder.create_builder_config()``,
  see :data:`RETURNS`), or else from the name edgevit gives it (:data:`RECEIVERS`);
* ``getattr(trt.X, "Y")`` / ``getattr(obj, "y")`` with a constant name; with a non-constant name the
  use is *dynamic* (the enum it indexes is recorded, the name cannot be);
* guards: ``if at_least(version, 10, 9):`` (and ``not``, ``and``/``or``, ``x if ... else y``, an
  ``if not at_least(...): raise/return`` before the use) limit a use to the table's versions the
  guard lets through; ``hasattr(trt.X, "Y")``, ``getattr(..., default)`` and a ``try`` that catches
  AttributeError make a use *existence-checked* (the code itself handles the name being absent).
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

TRT, CUDART = "tensorrt", "cudart"
MODULE_NAMES = {"trt": TRT, "tensorrt": TRT, "cudart": CUDART}
MODULE_FACTORIES = {"import_tensorrt": TRT, "import_cudart": CUDART}
CHECK_WRAPPERS = {"cuda_check", "_check", "check"}
"""``cuda_check(cudart.f(...))`` returns f's value(s) without the error code."""
GUARD_FUNCS = {"at_least"}
"""``at_least(version, 10, 9)``: the version guard (edgevit.tensorrt.rules.at_least)."""

RECEIVERS = {
    "builder": (TRT, "Builder"),
    "config": (TRT, "IBuilderConfig"),
    "network": (TRT, "INetworkDefinition"),
    "parser": (TRT, "OnnxParser"),
    "profile": (TRT, "IOptimizationProfile"),
    "runtime": (TRT, "Runtime"),
    "engine": (TRT, "ICudaEngine"),
    "context": (TRT, "IExecutionContext"),
    "inspector": (TRT, "EngineInspector"),
    "timing_cache": (TRT, "ITimingCache"),
    "layer": (TRT, "ILayer"),
    "props": (CUDART, "cudaDeviceProp"),
}
"""Names edgevit gives TensorRT objects whose maker the walker cannot see (parameters, attributes
set elsewhere). A name assigned from anything else in the same function is not taken for these."""

RETURNS = {
    (TRT, "Builder.create_network"): "INetworkDefinition",
    (TRT, "Builder.create_builder_config"): "IBuilderConfig",
    (TRT, "Builder.create_optimization_profile"): "IOptimizationProfile",
    (TRT, "INetworkDefinition.get_layer"): "ILayer",
    (TRT, "OnnxParser.get_error"): "ParserError",
    (TRT, "IBuilderConfig.create_timing_cache"): "ITimingCache",
    (TRT, "IBuilderConfig.get_timing_cache"): "ITimingCache",
    (TRT, "Runtime.deserialize_cuda_engine"): "ICudaEngine",
    (TRT, "ICudaEngine.create_execution_context"): "IExecutionContext",
    (TRT, "ICudaEngine.create_engine_inspector"): "EngineInspector",
    (CUDART, "cudaGetDeviceProperties"): "cudaDeviceProp",
}
"""What a TensorRT method (or, through :data:`CHECK_WRAPPERS`, a cudart function) returns."""


@dataclass(frozen=True)
class Use:
    api: str  # TRT or CUDART
    name: str  # "BuilderFlag.FP16", "IBuilderConfig.set_flag", "cudaMalloc"; "BuilderFlag.*" when dynamic
    path: str
    line: int
    guards: tuple = ()  # predicates version -> bool; the use runs only where all hold
    guard_text: str = ""
    existence_checked: bool = False  # hasattr / getattr default / try-except AttributeError
    dynamic: bool = False  # getattr with a name the walker cannot read
    via_object: bool = False  # a member of a TensorRT / cudart object ("IBuilderConfig.set_flag")

    def runs_on(self, versions):
        """The versions (``(major, minor)`` tuples) of ``versions`` this use can run on."""
        return [v for v in versions if all(g(v) for g in self.guards)]

    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class _Ctx:
    guards: tuple = ()
    texts: tuple = ()
    checked: frozenset = frozenset()  # names made existence-checked by hasattr
    in_try: bool = False

    def when(self, test: ast.expr, want: bool, walker, env) -> _Ctx:
        pred, names = walker.facts(test, want, env)
        guards = self.guards + ((pred,) if pred is not None else ())
        texts = self.texts + ((("" if want else "not ") + ast.unparse(test),) if pred is not None else ())
        return _Ctx(guards, texts, self.checked | names, self.in_try)


def _exits(body: list[ast.stmt]) -> bool:
    return bool(body) and isinstance(body[-1], (ast.Raise, ast.Return, ast.Continue, ast.Break))


def _catches_attribute_error(handler: ast.ExceptHandler) -> bool:
    if handler.type is None:
        return True
    names = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
    return any(isinstance(n, ast.Name) and n.id in ("AttributeError", "Exception", "BaseException") for n in names)


class Walker:
    """Collect :class:`Use` records from one module's source."""

    def __init__(self, source: str, path: str = "<source>"):
        self.path = path
        self.tree = ast.parse(source)
        self.uses: list[Use] = []
        self._class_env: dict[str, object] = {}
        self.uses_trt = any(  # the RECEIVERS names stand for TensorRT objects only where tensorrt is used
            (isinstance(n, ast.Name) and n.id in MODULE_NAMES)
            or (isinstance(n, ast.Attribute) and n.attr in MODULE_NAMES)
            for n in ast.walk(self.tree))

    # ---------------------------------------------------------------- types
    def _type(self, node, env):
        """("module", api) | ("name", api, dotted) | ("object", api, cls) | None."""
        if isinstance(node, ast.Name):
            if node.id in env:
                return env[node.id]
            if node.id in MODULE_NAMES:
                return ("module", MODULE_NAMES[node.id])
            if node.id in RECEIVERS and self.uses_trt:
                return ("object", *RECEIVERS[node.id])
            return None
        if isinstance(node, ast.Attribute):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                if node.attr in self._class_env:
                    return self._class_env[node.attr]
                if node.attr in MODULE_NAMES:
                    return ("module", MODULE_NAMES[node.attr])
                if node.attr in RECEIVERS and self.uses_trt:
                    return ("object", *RECEIVERS[node.attr])
                return None
            base = self._type(node.value, env)
            if base is None:
                return None
            if base[0] == "module":
                return ("name", base[1], node.attr)
            if base[0] == "name":
                return ("name", base[1], f"{base[2]}.{node.attr}")
            return None  # attribute of an object: a value the walker does not type
        if isinstance(node, ast.BoolOp):  # `trt = trt or import_tensorrt()`
            return next((t for t in (self._type(v, env) for v in node.values) if t is not None), None)
        if isinstance(node, ast.Call):
            func = node.func
            fname = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if fname in MODULE_FACTORIES:
                return ("module", MODULE_FACTORIES[fname])
            if fname in CHECK_WRAPPERS and node.args:
                inner = node.args[0]
                if isinstance(inner, ast.Call):
                    t = self._type(inner.func, env)
                    if t and t[0] == "name" and (t[1], t[2]) in RETURNS:
                        return ("object", t[1], RETURNS[(t[1], t[2])])
                return None
            t = self._type(func, env)
            if t is None:
                if isinstance(func, ast.Attribute):
                    owner = self._type(func.value, env)
                    if owner and owner[0] == "object" and (owner[1], f"{owner[2]}.{func.attr}") in RETURNS:
                        return ("object", owner[1], RETURNS[(owner[1], f"{owner[2]}.{func.attr}")])
                return None
            if t[0] == "name" and "." not in t[2] and t[2][:1].isupper():
                return ("object", t[1], t[2])  # trt.Builder(...) -> a Builder
            return None
        return None

    def _bind(self, targets, value, env):
        t = self._type(value, env)
        for target in targets:
            if isinstance(target, ast.Name) and target.id in MODULE_NAMES and t is None:
                continue  # `trt` stays the module whatever it is rebound from
            if isinstance(target, ast.Name):
                env[target.id] = t
            elif isinstance(target, ast.Attribute) and isinstance(target.value, ast.Name) and target.value.id == "self":
                if t is not None:
                    self._class_env[target.attr] = t
                elif not (isinstance(value, ast.Constant) and value.value is None):
                    self._class_env.setdefault(target.attr, None)  # `self.config = Options()` is no IBuilderConfig

    def _function_env(self, func) -> dict:
        env: dict = {}
        for arg in func.args.args + func.args.kwonlyargs + func.args.posonlyargs:
            if arg.arg in MODULE_NAMES:
                env[arg.arg] = ("module", MODULE_NAMES[arg.arg])
            elif arg.annotation is not None:  # `engine: dict` is no ICudaEngine; `engine: "trt.ICudaEngine"` is
                ann = arg.annotation
                if isinstance(ann, ast.Constant) and isinstance(ann.value, str):
                    ann = ast.parse(ann.value, mode="eval").body
                t = self._type(ann, {})
                env[arg.arg] = ("object", t[1], t[2]) if t and t[0] == "name" else None
            elif not self.uses_trt:
                env[arg.arg] = None  # a module that never touches tensorrt holds no TensorRT objects
        assigns = sorted((n for n in ast.walk(func) if isinstance(n, (ast.Assign, ast.AnnAssign))),
                         key=lambda n: (n.lineno, n.col_offset))
        for _ in range(2):  # twice, so a name bound later in the text but earlier in a loop is typed
            for node in assigns:
                if node.value is not None:
                    self._bind(node.targets if isinstance(node, ast.Assign) else [node.target], node.value, env)
        for node in ast.walk(func):  # names bound by for / with / except / imports are no receivers
            if isinstance(node, (ast.For, ast.comprehension)):
                for n in ast.walk(node.target):
                    if isinstance(n, ast.Name):
                        env.setdefault(n.id, None)
            elif isinstance(node, ast.withitem) and node.optional_vars is not None:
                for n in ast.walk(node.optional_vars):
                    if isinstance(n, ast.Name):
                        env.setdefault(n.id, None)
        return env

    # ---------------------------------------------------------------- guards
    def facts(self, test, want: bool, env=None):
        """(predicate or None, names existence-checked) for ``test`` evaluating to ``want``.

        The predicate says, for a table version, whether ``test`` *can* be ``want`` there;
        None means the test says nothing about versions."""
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            return self.facts(test.operand, not want, env)
        if isinstance(test, ast.Call):
            func = test.func
            fname = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
            if fname in GUARD_FUNCS and len(test.args) >= 2:
                parts = [a.value for a in test.args[1:] if isinstance(a, ast.Constant) and isinstance(a.value, int)]
                if len(parts) == len(test.args) - 1:
                    need = tuple(parts)
                    return (lambda v, need=need, want=want: (tuple(v) >= need) == want), frozenset()
            if fname == "hasattr" and len(test.args) == 2 and want:
                name = self._constant_attr(test.args[0], test.args[1], env or {})
                return None, frozenset({name} if name else ())
            return None, frozenset()
        if isinstance(test, ast.BoolOp):
            parts = [self.facts(v, want, env) for v in test.values]
            preds = [p for p, _ in parts]
            conjunction = isinstance(test.op, ast.And) == want  # and->True / or->False: every part holds
            if conjunction:
                known = [p for p in preds if p is not None]
                pred = (lambda v, known=tuple(known): all(p(v) for p in known)) if known else None
                return pred, frozenset().union(*(n for _, n in parts))
            if any(p is None for p in preds):
                return None, frozenset()
            return (lambda v, preds=tuple(preds): any(p(v) for p in preds)), frozenset()
        return None, frozenset()

    def _constant_attr(self, obj, attr, env):
        """``getattr(obj, "name")`` / ``hasattr(obj, "name")`` -> (api, dotted) or None."""
        if not (isinstance(attr, ast.Constant) and isinstance(attr.value, str)):
            return None
        t = self._type(obj, env)
        if t is None:
            return None
        if t[0] == "module":
            return (t[1], attr.value)
        return (t[1], f"{t[2]}.{attr.value}")

    # ---------------------------------------------------------------- walk
    def walk(self) -> list[Use]:
        self._class_env = {}
        self._block(self.tree.body, _Ctx(), {})
        return self.uses

    def _record(self, api, name, node, ctx, existence=False, dynamic=False, via_object=False):
        checked = existence or ctx.in_try or any(c == (api, name) or name.startswith(c[1] + ".")
                                                 for c in ctx.checked if c[0] == api)
        self.uses.append(Use(api, name, self.path, node.lineno, ctx.guards, " and ".join(ctx.texts),
                             checked, dynamic, via_object))

    def _block(self, stmts, ctx, env):
        for stmt in stmts:
            if isinstance(stmt, ast.ClassDef):
                saved = self._class_env
                self._class_env = {}
                for node in ast.walk(stmt):  # self.x = ... anywhere in the class types self.x
                    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        self._function_env(node)
                self._block(stmt.body, ctx, env)
                self._class_env = saved
            elif isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for d in stmt.decorator_list + stmt.args.defaults + stmt.args.kw_defaults:
                    if d is not None:
                        self._expr(d, ctx, env)
                self._block(stmt.body, ctx, self._function_env(stmt))
            elif isinstance(stmt, ast.If):
                self._expr(stmt.test, ctx, env)
                self._block(stmt.body, ctx.when(stmt.test, True, self, env), env)
                self._block(stmt.orelse, ctx.when(stmt.test, False, self, env), env)
                if _exits(stmt.body) and not stmt.orelse:
                    ctx = ctx.when(stmt.test, False, self, env)  # `if not at_least(...): raise` guards the rest
                elif _exits(stmt.orelse) and not _exits(stmt.body):
                    ctx = ctx.when(stmt.test, True, self, env)
            elif isinstance(stmt, ast.Try):
                guarded = any(_catches_attribute_error(h) for h in stmt.handlers)
                inner = _Ctx(ctx.guards, ctx.texts, ctx.checked, ctx.in_try or guarded)
                self._block(stmt.body, inner, env)
                for h in stmt.handlers:
                    self._block(h.body, ctx, env)
                self._block(stmt.orelse, ctx, env)
                self._block(stmt.finalbody, ctx, env)
            else:
                for fld, value in ast.iter_fields(stmt):
                    if isinstance(value, list) and value and isinstance(value[0], ast.stmt):
                        self._block(value, ctx, env)
                    elif isinstance(value, list):
                        for v in value:
                            if isinstance(v, ast.AST):
                                self._expr(v, ctx, env)
                    elif isinstance(value, ast.AST):
                        self._expr(value, ctx, env)

    def _expr(self, node, ctx, env):
        if isinstance(node, ast.IfExp):
            self._expr(node.test, ctx, env)
            self._expr(node.body, ctx.when(node.test, True, self, env), env)
            self._expr(node.orelse, ctx.when(node.test, False, self, env), env)
            return
        if isinstance(node, ast.BoolOp):
            inner = ctx
            for value in node.values:
                self._expr(value, inner, env)
                inner = inner.when(value, isinstance(node.op, ast.And), self, env)
            return
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr"):
            if len(node.args) >= 2:
                obj, attr = node.args[0], node.args[1]
                t = self._type(obj, env)
                if t is not None and t[0] in ("module", "name", "object"):
                    name = self._constant_attr(obj, attr, env)
                    if node.func.id == "getattr":
                        if name:
                            self._record(name[0], name[1], node, ctx, existence=len(node.args) > 2,
                                         via_object=t[0] == "object")
                        else:
                            owner = "" if t[0] == "module" else t[2] + "."
                            self._record(t[1], owner + "*", node, ctx, existence=len(node.args) > 2, dynamic=True,
                                         via_object=t[0] == "object")
                    self._expr(obj, ctx, env) if t[0] != "module" else None
                    for rest in node.args[1:]:
                        self._expr(rest, ctx, env)
                    return
        if isinstance(node, ast.Attribute):
            t = self._type(node, env)
            if t is not None and t[0] == "name":
                self._record(t[1], t[2], node, ctx)
                return  # the whole chain is one name
            owner = self._type(node.value, env)
            if owner is not None and owner[0] == "object":
                self._record(owner[1], f"{owner[2]}.{node.attr}", node, ctx, via_object=True)
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.expr):
                self._expr(child, ctx, env)
            elif isinstance(child, ast.comprehension):
                for sub in ast.iter_child_nodes(child):
                    self._expr(sub, ctx, env)
            elif isinstance(child, ast.keyword):
                self._expr(child.value, ctx, env)


def walk_source(source: str, path: str = "<source>") -> list[Use]:
    """Every TensorRT / cudart name ``source`` touches (see the module docstring)."""
    return Walker(source, path).walk()


def walk_package(root: Path, base: Path | None = None) -> list[Use]:
    """:func:`walk_source` over every ``.py`` file under ``root`` (paths relative to ``base``, by default
    root's grandparent: ``edgevit/tensorrt/build.py``)."""
    base = Path(base) if base is not None else Path(root).parent.parent
    uses = []
    for path in sorted(Path(root).rglob("*.py")):
        uses += walk_source(path.read_text(encoding="utf-8"), path.relative_to(base).as_posix())
    return uses

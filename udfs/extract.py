"""Find top-level documented functions in one Python source file.

Plain Python on plain values, so it is unit-tested without Spark. Every way a
file can be bad (null, binary, Python 2, huge, pathologically nested, NUL bytes,
unterminated strings) ends as a `FileReject`, never as an exception.
"""

from __future__ import annotations

import ast
import gc
import hashlib
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

from schemas.outcome import Reason

FUNCTION_DEFS = (ast.FunctionDef, ast.AsyncFunctionDef)
SCOPE_NODES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)


@dataclass(frozen=True)
class FileReject:
    reason: Reason
    detail: str


@dataclass
class Function:
    function_id: str
    name: str
    signature: str
    docstring: str
    code: str
    imports: str
    line_count: int
    arg_count: int
    has_return: bool
    # Top-level module names the function depends on (its used imports plus inline ones).
    modules: list[str] = field(default_factory=list)
    # A `return <expr>` anywhere in it, nested scopes and `return None` included (the
    # published return rule; `has_return` is selfalign's).
    has_any_return: bool = False


def normalize_code(code: str) -> str:
    """Whitespace-insensitive form used for the content-hash id."""
    lines = (line.rstrip() for line in code.replace("\r\n", "\n").replace("\r", "\n").split("\n"))
    return "\n".join(line for line in lines if line)


def function_id(code: str) -> str:
    return hashlib.sha256(normalize_code(code).encode("utf-8")).hexdigest()


def decode_content(content: str | bytes | None) -> str | FileReject:
    if content is None:
        return FileReject(Reason.EMPTY_CONTENT, "content is null")
    if isinstance(content, (bytes, bytearray)):
        try:
            content = bytes(content).decode("utf-8")
        except UnicodeDecodeError as exc:
            return FileReject(Reason.NOT_UTF8, f"invalid UTF-8 at byte {exc.start}")
    if not content.strip():
        return FileReject(Reason.EMPTY_CONTENT, "content is empty or whitespace")
    return content


# Control characters other than tab, newline, carriage return and form feed.
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f]")
_CONTROL_BYTES = bytes([*range(0x00, 0x09), 0x0B, *range(0x0E, 0x20)])


def looks_binary(text: str) -> bool:
    """Control characters other than tab/newline/formfeed in the first 8 KiB."""
    head = text[:8192]
    if head.isascii():
        # Counted by deleting them from the bytes in C: four times faster than the
        # regex, and 24 heads in 25 of installed Python files are ASCII.
        raw = head.encode("ascii")
        controls = len(raw) - len(raw.translate(None, _CONTROL_BYTES))
    else:
        controls = len(_CONTROL.findall(head))
    return controls > max(8, len(head) // 100)


_PY2_HINTS = (
    "Missing parentheses in call to 'print'",
    "Missing parentheses in call to 'exec'",
    "multiple exception types must be parenthesized",
    "invalid hexadecimal literal",
)
_PY2_SOURCE = re.compile(r"^\s*(print\s+[^\s(=]|exec\s+[\"']|raise\s+\w+\s*,)|\bur[\"']|0[0-7]+L?\b|\d+L\b", re.M)


def classify_syntax_error(exc: SyntaxError, text: str) -> FileReject:
    message = exc.msg or str(exc)
    where = f"line {exc.lineno}: {message}" if exc.lineno else message
    if "null bytes" in message:
        return FileReject(Reason.NUL_BYTES, where)
    if isinstance(exc, IndentationError) and "too many levels" in message:
        return FileReject(Reason.TOO_DEEPLY_NESTED, where)
    if "too many nested" in message or "too complex" in message:
        return FileReject(Reason.TOO_DEEPLY_NESTED, where)
    if any(hint in message for hint in _PY2_HINTS) or _PY2_SOURCE.search(text):
        return FileReject(Reason.PYTHON2_SYNTAX, where)
    if "unterminated" in message or "EOF" in message:
        return FileReject(Reason.UNTERMINATED_TOKEN, where)
    return FileReject(Reason.SYNTAX_ERROR, where)


@contextmanager
def parsing_without_gc() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while parsing a batch of files.

    `ast.parse` allocates millions of small objects, and every few hundred allocations
    the collector scans the young ones for cycles; syntax trees have none (refcounting
    frees them), so that scan is pure overhead: a third of the parse time on the sample.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def parse_module(text: str) -> ast.Module | FileReject:
    if "\x00" in text:
        return FileReject(Reason.NUL_BYTES, "source contains NUL bytes")
    try:
        return ast.parse(text)
    except SyntaxError as exc:  # includes IndentationError / TabError
        return classify_syntax_error(exc, text)
    except RecursionError:
        return FileReject(Reason.TOO_DEEPLY_NESTED, "parser recursion limit exceeded")
    except MemoryError:
        return FileReject(Reason.TOO_DEEPLY_NESTED, "parser ran out of memory")
    except ValueError as exc:
        return FileReject(Reason.NUL_BYTES if "null" in str(exc) else Reason.PARSE_ERROR, str(exc)[:200])


# --- imports -----------------------------------------------------------------

@dataclass(frozen=True)
class Binding:
    """One name bound by a module-level import, and how to re-create it alone."""

    statement: str
    module: str  # top-level module name, for banned-import checks


def _alias_binding(node: ast.Import | ast.ImportFrom, alias: ast.alias) -> tuple[str, Binding]:
    if isinstance(node, ast.Import):
        bound = alias.asname or alias.name.split(".")[0]
        statement = f"import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
        return bound, Binding(statement, alias.name.split(".")[0])
    source = "." * node.level + (node.module or "")
    bound = alias.asname or alias.name
    statement = f"from {source} import {alias.name}" + (f" as {alias.asname}" if alias.asname else "")
    top = (node.module or "").split(".")[0] if node.level == 0 else source
    return bound, Binding(statement, top)


def _module_level_imports(body: Iterable[ast.stmt]) -> Iterator[ast.Import | ast.ImportFrom]:
    """Imports at module level, including those under top-level if/try blocks."""
    stack = list(body)[::-1]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        elif isinstance(node, (ast.If, ast.Try)):
            children: list[ast.stmt] = [*node.body, *node.orelse]
            if isinstance(node, ast.Try):
                children += [stmt for handler in node.handlers for stmt in handler.body]
                children += node.finalbody
            stack.extend(children[::-1])


def import_bindings(module: ast.Module) -> dict[str, Binding]:
    bindings: dict[str, Binding] = {}
    for node in _module_level_imports(module.body):
        for alias in node.names:
            if alias.name == "*":
                continue
            name, binding = _alias_binding(node, alias)
            bindings.setdefault(name, binding)
    return bindings


@dataclass
class _BodyFacts:
    names: set[str]  # every Name read or bound anywhere inside, nested scopes included
    modules: set[str]  # top-level modules imported inside the function
    returns_value: bool  # a `return <value>` of the function itself (not of a nested scope)
    any_return_value: bool = False  # a `return <expr>` at any depth, `return None` included


# Nested scopes: their returns are not the function's own.
_SCOPE_CLASSES = frozenset(SCOPE_NODES)
# Per node class, the fields that can hold child nodes: all but an expression's
# Load/Store context (never a Name, import or return); a Constant holds only values.
_CHILD_FIELDS: dict[type, tuple[str, ...]] = {ast.Constant: ()}


def _child_fields(cls: type) -> tuple[str, ...]:
    fields = _CHILD_FIELDS.get(cls)
    if fields is None:
        fields = _CHILD_FIELDS[cls] = tuple(name for name in getattr(cls, "_fields", ()) if name != "ctx")
    return fields


def body_facts(func: ast.AST) -> _BodyFacts:
    """Names, inline imports and returns of a function in one walk of its tree.

    One hand-rolled walk instead of three `ast.walk`s: extract visits every node of
    every documented function in the corpus (a fifth of the stage's Python time when it
    was ast.walk). Nodes are told apart by their exact class (the parser builds no
    subclasses), children come from a per-class field list, and the function's own
    scope is walked first while nested functions, lambdas and classes wait on a second
    stack, so no node carries an "own scope" flag: twice as fast as isinstance tests
    and (node, flag) pairs.
    """
    facts = _BodyFacts(set(), set(), False)
    # Locals: this loop runs once per node of every documented function.
    names, modules = facts.names, facts.modules
    name_cls, return_cls, constant_cls = ast.Name, ast.Return, ast.Constant
    import_cls, import_from_cls, node_cls = ast.Import, ast.ImportFrom, ast.AST
    # Any: nodes are told apart by `is` on their class, which a type checker cannot follow.
    stack: list[Any] = list(ast.iter_child_nodes(func))
    nested: list[Any] = []
    own = True
    while True:
        while stack:
            node = stack.pop()
            cls = node.__class__
            if cls is name_cls:
                names.add(node.id)
                continue  # its only child is the Load/Store context
            if cls is return_cls:
                value = node.value
                if value is not None:
                    facts.any_return_value = True
                    if own and not (value.__class__ is constant_cls and value.value is None):
                        facts.returns_value = True
            elif cls is import_cls:
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif cls is import_from_cls:
                if node.level == 0 and node.module:
                    modules.add(node.module.split(".")[0])
            elif own and cls in _SCOPE_CLASSES:
                nested.append(node)  # walked after the function's own scope
                continue
            fields = _CHILD_FIELDS.get(cls)
            if fields is None:
                fields = _child_fields(cls)
            for field_name in fields:
                value = getattr(node, field_name, None)
                if isinstance(value, list):
                    for item in value:  # a loop: a generator per list costs more
                        if isinstance(item, node_cls):
                            stack.append(item)
                elif isinstance(value, node_cls):
                    stack.append(value)
        if not nested:
            return facts
        stack, nested, own = nested, [], False


def count_args(args: ast.arguments) -> int:
    return (
        len(args.posonlyargs) + len(args.args) + len(args.kwonlyargs)
        + (1 if args.vararg else 0) + (1 if args.kwarg else 0)
    )


def signature_of(lines: list[str], func: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The `def ...:` header as written, joined onto one line."""
    body_start = func.body[0].lineno
    header = lines[func.lineno - 1 : body_start - 1] or [lines[func.lineno - 1]]
    text = " ".join(part.strip() for part in header)
    return text[: text.rfind(":") + 1] if ":" in text else text


def extract_functions(text: str, module: ast.Module) -> list[Function]:
    lines = text.splitlines()
    bindings: dict[str, Binding] | None = None
    found: list[Function] = []
    for node in module.body:
        if not isinstance(node, FUNCTION_DEFS):
            continue
        docstring = ast.get_docstring(node, clean=True)
        if not docstring or node.end_lineno is None:
            continue
        if bindings is None:
            bindings = import_bindings(module)
        first = node.decorator_list[0].lineno if node.decorator_list else node.lineno
        code = "\n".join(lines[first - 1 : node.end_lineno])
        facts = body_facts(node)
        used = sorted(name for name in facts.names if name in bindings)
        statements = sorted({bindings[name].statement for name in used})
        modules = sorted({bindings[name].module for name in used} | facts.modules)
        found.append(
            Function(
                function_id=function_id(code),
                name=node.name,
                signature=signature_of(lines, node),
                docstring=docstring,
                code=code,
                imports="\n".join(statements),
                line_count=node.end_lineno - first + 1,
                arg_count=count_args(node.args),
                has_return=facts.returns_value,
                modules=modules,
                has_any_return=facts.any_return_value,
            )
        )
    return found


# A top-level `def` or `async def` starts a line (after form feeds, which Python allows
# before top-level code). Conservative: a match in a string only means a parse.
# The text's first line, then every line after a "\n" (what `^` matches under re.M):
# a pattern that starts with a literal newline is searched for that character, four
# times faster than trying `^` at every position of the file.
_DEF_AT_START = re.compile(r"\x0c*(?:async|def)\b")
_DEF_AFTER_NEWLINE = re.compile(r"\n\x0c*(?:async|def)\b")


def has_top_level_def(text: str) -> bool:
    return _DEF_AT_START.match(text) is not None or _DEF_AFTER_NEWLINE.search(text) is not None


def extract_file(content: str | bytes | None, max_bytes: int) -> list[Function] | FileReject:
    """All documented top-level functions of a file, or the reason the file is unusable."""
    text = decode_content(content)
    if isinstance(text, FileReject):
        return text
    size = len(text.encode("utf-8", errors="replace"))
    if size > max_bytes:
        return FileReject(Reason.FILE_TOO_LARGE, f"{size} bytes > {max_bytes}")
    if looks_binary(text):
        return FileReject(Reason.NUL_BYTES if "\x00" in text else Reason.BINARY_CONTENT,
                          "control characters in source")
    if not has_top_level_def(text):
        # Parsing is most of extract's cost, and two files in five define no top-level
        # function at all: they are dropped for that, whether or not they would parse.
        return FileReject(Reason.NO_DOCSTRING_FUNCTIONS, "no top-level def")
    module = parse_module(text)
    if isinstance(module, FileReject):
        return module
    try:
        functions = extract_functions(text, module)
    except RecursionError:
        return FileReject(Reason.TOO_DEEPLY_NESTED, "tree too deep to walk")
    if not functions:
        return FileReject(Reason.NO_DOCSTRING_FUNCTIONS, "no top-level function with a docstring")
    return functions


# --- heuristic rules -------------------------------------------------------------

# How each rule reads a function: selfalign's way first, then the published one
# (seed_gathering/filter_dataset.py of bigcode-project/starcoder2-self-align).
MarkerMatch = Literal["word", "substring"]  # whole words in the code | substring of imports + code
ImportMatch = Literal["module", "substring"]  # imported module names | "import X"/"from X" in the text
ReturnRule = Literal["own_value", "any_value"]  # the function's own non-None return | any `return <expr>`
NoArgsMatch = Literal["ast", "text"]  # no parameters at all | a line starting "def " holding "():"

# A pattern that never matches: no markers configured means no marker can be found.
_NEVER = re.compile(r"(?!)")


@dataclass(frozen=True)
class RuleSet:
    rules: tuple[str, ...]
    max_lines: int
    markers: tuple[str, ...]
    banned_imports: frozenset[str]
    marker_match: MarkerMatch = "word"
    banned_import_match: ImportMatch = "module"
    return_rule: ReturnRule = "own_value"
    no_args_match: NoArgsMatch = "ast"

    @property
    def marker_pattern(self) -> re.Pattern[str]:
        if not self.markers:
            return _NEVER
        words = "|".join(re.escape(m) for m in self.markers)
        if self.marker_match == "substring":
            return re.compile(f"({words})", re.IGNORECASE)
        return re.compile(rf"\b({words})\b", re.IGNORECASE)

    @cached_property
    def lowered_markers(self) -> tuple[str, ...] | None:
        """The markers lower-cased, when all are ASCII (see `_marker`); else None."""
        if not all(marker.isascii() for marker in self.markers):
            return None
        return tuple(marker.lower() for marker in self.markers)

    @property
    def import_strings(self) -> tuple[str, ...]:
        """The published banned strings: every "import X", then every "from X"."""
        names = sorted(self.banned_imports)
        return (*(f"import {m}" for m in names), *(f"from {m}" for m in names))


KNOWN_RULES = ("needs_return", "needs_args", "max_lines", "no_markers", "no_banned_imports")


def published_text(fn: Function) -> str:
    """The nearest thing to the text the published rules read (the function after
    autoimport put its imports on top): the function's imports, a blank line, its code."""
    return f"{fn.imports}\n\n{fn.code}" if fn.imports else fn.code


def _no_args(fn: Function, rules: RuleSet) -> bool:
    if rules.no_args_match == "text":
        return any(line.startswith("def ") and "():" in line for line in fn.code.split("\n"))
    return fn.arg_count == 0


def _banned(fn: Function, rules: RuleSet) -> str | None:
    if rules.banned_import_match == "substring":
        lowered = published_text(fn).lower()
        return next((s for s in rules.import_strings if s in lowered), None)
    return ", ".join(sorted(set(fn.modules) & rules.banned_imports)) or None


def _marker(fn: Function, rules: RuleSet, marker_re: re.Pattern[str]) -> str | None:
    """The first marker in the function (marker_re is rules.marker_pattern, compiled once)."""
    text = published_text(fn) if rules.marker_match == "substring" else fn.code
    lowered = rules.lowered_markers
    if lowered is not None and text.isascii():
        # Most functions hold no marker, and the case-insensitive regex costs three
        # times these substring tests. Exact for ASCII text and markers: there a
        # case-insensitive match is a substring of the lower-cased text (beyond ASCII,
        # the regex also folds characters such as the long s).
        lowered_text = text.lower()
        if not any(marker in lowered_text for marker in lowered):
            return None
    hit = marker_re.search(text)
    return hit.group(0) if hit else None


def check_rules(fn: Function, rules: RuleSet, marker_re: re.Pattern[str]) -> tuple[Reason, str] | None:
    """The first rule the function breaks, as (reason, detail), or None if it passes."""
    for rule in rules.rules:
        if rule == "needs_return":
            if rules.return_rule == "any_value" and not fn.has_any_return:
                return Reason.NO_RETURN_VALUE, "no `return <value>` anywhere in the function"
            if rules.return_rule == "own_value" and not fn.has_return:
                return Reason.NO_RETURN_VALUE, "no `return <value>` in the function body"
        if rule == "needs_args" and _no_args(fn, rules):
            if rules.no_args_match == "text":
                return Reason.NO_ARGUMENTS, "a line starts with 'def ' and holds '():'"
            return Reason.NO_ARGUMENTS, "function takes no arguments"
        if rule == "max_lines" and fn.line_count > rules.max_lines:
            return Reason.TOO_LONG, f"{fn.line_count} lines > {rules.max_lines}"
        if rule == "no_markers":
            marker = _marker(fn, rules, marker_re)
            if marker is not None:
                return Reason.HAS_MARKER, f"contains '{marker}'"
        if rule == "no_banned_imports":
            banned = _banned(fn, rules)
            if banned is not None:
                return Reason.BANNED_IMPORT, banned
    return None

"""Few-shot prompts for the base model, built from versioned YAML in conf/prompts/.

The words (instructions, examples) are data that can be reviewed and re-versioned
without touching code. The layout (separators, field labels, where each prompt
ends) is code, because the parsers in udfs.parse and the stop sequences in STOPS
depend on it.

Builders are pure and take an explicit seed key: every example choice comes from
sha256 of that key, never from Python's per-process hash(), so each executor and
each rerun builds byte-identical prompts.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Annotated, Any, Literal, TypeVar

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError

from udfs.parse import (
    MARKERS,
    RESPONSE_OPENING,
    SEPARATOR,
    parse_concepts,
    parse_response,
)

KINDS: tuple[str, ...] = ("judge", "concepts", "instruct", "respond")
FILES: Mapping[str, str] = MappingProxyType(
    {"judge": "judge.yaml", "oss_instruct": "oss_instruct.yaml", "respond": "respond.yaml"}
)

# Where the model must stop. Judge and concepts answers are one line; instructions
# and responses run until the model starts the next few-shot block.
STOPS: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "judge": ("\n",),
        "concepts": ("\n",),
        "instruct": ("\n" + SEPARATOR,),
        "respond": ("\n" + SEPARATOR,),
    }
)

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

# libyaml's loader when PyYAML was built with it: the same safe subset, much faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PromptConfigError(ValueError):
    """A problem in a prompts YAML file, naming the file and the key."""


def stop_sequences(kind: str) -> list[str]:
    """A fresh list of the stop sequences for one step (engines want a list)."""
    _check_kind(kind)
    return list(STOPS[kind])


# --- config schema --------------------------------------------------------------

def _not_blank(value: str) -> str:
    if not value.strip():
        raise ValueError("must not be blank")
    return value


Text = Annotated[str, AfterValidator(_not_blank)]


class _Model(BaseModel):
    # Unknown keys are typos; strict types stop `version: 1` becoming "1" silently.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class JudgeExample(_Model):
    code: Text
    answer: Literal["Yes", "No"]
    reason: str = ""


class JudgeConfig(_Model):
    version: Text
    instruction: Text
    examples: list[JudgeExample] = Field(min_length=2)
    # blocks (judge.yaml): the instruction once, then numbered Docstring/Code/Answer
    # blocks. issue (judge_published.yaml, the published framing): each function is a
    # GitHub issue thread in StarCoder2's issue format; `instruction` is the asker's post,
    # holding {docstring} and {code} once each, `reply` opens the answering comment and
    # the answer follows it on its last line.
    layout: Literal["blocks", "issue"] = "blocks"
    reply: str = ""


JUDGE_SLOTS = ("docstring", "code")  # the issue layout's slots in `instruction`


class OssExample(_Model):
    snippet: Text
    concepts: Text
    category: Text
    difficulty: Text
    instruction: Text
    response: Text


class OssInstructConfig(_Model):
    version: Text
    concepts_instruction: Text
    instruct_instruction: Text
    categories: list[Text] = Field(min_length=1)
    difficulties: list[Text] = Field(min_length=1)
    shots: int = Field(ge=1)
    examples: list[OssExample] = Field(min_length=1)


class RespondExample(_Model):
    instruction: Text
    response: Text


class RespondConfig(_Model):
    version: Text
    instruction: Text
    examples: list[RespondExample] = Field(min_length=1)


@dataclass(frozen=True)
class PromptSet:
    """The three prompt files, validated; picklable, so it ships to executors."""

    judge: JudgeConfig
    oss: OssInstructConfig
    respond: RespondConfig
    directory: str


# --- loading --------------------------------------------------------------------

def default_prompts_dir() -> Path:
    return Path(__file__).resolve().parent.parent / "conf" / "prompts"


def _describe(error: Mapping[str, Any]) -> str:
    key = ".".join(str(part) for part in error["loc"]) or "<root>"
    if error["type"] == "missing":
        return f"missing required key '{key}'"
    if error["type"] == "extra_forbidden":
        return f"unknown key '{key}'"
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"key '{key}': {message}"


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise PromptConfigError(f"prompts: file not found: {path}")
    try:
        raw = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise PromptConfigError(f"prompts: {path}{where} is not valid YAML") from None
    if not isinstance(raw, dict):
        raise PromptConfigError(f"prompts: {path} must hold a mapping at the top level")
    return raw


def _load_model(path: Path, model: type[M]) -> M:
    raw = _read_yaml(path)
    try:
        return model.model_validate(raw)
    except ValidationError as exc:
        raise PromptConfigError(f"prompts: {path}: {_describe(exc.errors()[0])}") from None


def _fail(path: Path, key: str, message: str) -> PromptConfigError:
    return PromptConfigError(f"prompts: {path}: key '{key}': {message}")


def _check_response(path: Path, key: str, response: str) -> None:
    """An example response must be in the exact format the parser reads back."""
    if not response.lstrip().startswith(RESPONSE_OPENING):
        raise _fail(path, key, f"must start with the line '{MARKERS['reasoning']}'")
    missing = parse_response(response).missing
    if missing:
        raise _fail(path, key, f"missing sections: {', '.join(missing)}")
    if "\n" + SEPARATOR in response:
        raise _fail(path, key, f"contains the stop sequence {SEPARATOR!r} at a line start")


def _check_judge(path: Path, cfg: JudgeConfig) -> None:
    answers = {example.answer for example in cfg.examples}
    if answers != {"Yes", "No"}:
        raise _fail(path, "examples", "needs at least one Yes and one No example")
    for index, example in enumerate(cfg.examples):
        if "\n" in example.reason.strip():
            raise _fail(path, f"examples.{index}.reason", "must be a single line")
    if cfg.layout == "blocks":
        if cfg.reply:
            raise _fail(path, "reply", "is for layout: issue only")
        return
    for slot in JUDGE_SLOTS:
        if cfg.instruction.count("{" + slot + "}") != 1:
            raise _fail(path, "instruction", f"must hold {{{slot}}} exactly once (layout: issue)")
    if not cfg.reply.strip():
        raise _fail(path, "reply", "must not be blank (layout: issue)")


def _check_unique(path: Path, key: str, values: Sequence[str]) -> None:
    if len(set(values)) != len(values):
        raise _fail(path, key, "has duplicate entries")


def _check_oss(path: Path, cfg: OssInstructConfig) -> None:
    _check_unique(path, "categories", cfg.categories)
    _check_unique(path, "difficulties", cfg.difficulties)
    if cfg.shots > len(cfg.examples):
        raise _fail(path, "shots", f"{cfg.shots} is more than the {len(cfg.examples)} examples")
    for index, example in enumerate(cfg.examples):
        where = f"examples.{index}"
        if example.category not in cfg.categories:
            raise _fail(path, f"{where}.category", f"{example.category!r} is not in categories")
        if example.difficulty not in cfg.difficulties:
            raise _fail(path, f"{where}.difficulty", f"{example.difficulty!r} is not in difficulties")
        # Rendered as written, so it must already be in the form the parser returns.
        if ", ".join(parse_concepts(example.concepts)) != example.concepts.strip():
            raise _fail(path, f"{where}.concepts", "must be one line of unique, comma-separated concepts")
        if "\n" + SEPARATOR in example.instruction:
            raise _fail(path, f"{where}.instruction", f"contains the stop sequence {SEPARATOR!r}")
        _check_response(path, f"{where}.response", example.response)


SFT_TEMPLATE_FILE = "sft_template.yaml"
INSTRUCTION_SLOT, RESPONSE_SLOT = "{instruction}", "{response}"


class SftTemplate(_Model):
    """The instruction/response layout of conf/prompts/sft_template.yaml."""

    version: Text
    template: Text

    def prompt(self, instruction: str) -> str:
        """The text before the response: what a fine-tuned model is given."""
        return self.template.split(RESPONSE_SLOT)[0].replace(INSTRUCTION_SLOT, instruction)

    def render(self, instruction: str, response: str) -> str:
        return self.prompt(instruction) + response


def load_sft_template(prompts_dir: str | Path | None = None) -> SftTemplate:
    """sft_template.yaml, checked: each slot once, the response slot last."""
    directory = Path(prompts_dir) if prompts_dir is not None else default_prompts_dir()
    path = directory / SFT_TEMPLATE_FILE
    template = _load_model(path, SftTemplate)
    for slot in (INSTRUCTION_SLOT, RESPONSE_SLOT):
        if template.template.count(slot) != 1:
            raise _fail(path, "template", f"must hold {slot} exactly once")
    if not template.template.rstrip().endswith(RESPONSE_SLOT):
        raise _fail(path, "template", f"must end with {RESPONSE_SLOT}")
    if template.template.index(INSTRUCTION_SLOT) > template.template.index(RESPONSE_SLOT):
        raise _fail(path, "template", f"{INSTRUCTION_SLOT} must come before {RESPONSE_SLOT}")
    return template


def load_judge(name: str = FILES["judge"], prompts_dir: str | Path | None = None) -> JudgeConfig:
    """A judge prompt file (generation.judge.template), checked: `name` under prompts_dir
    (the packaged conf/prompts when None), or an absolute path."""
    directory = Path(prompts_dir) if prompts_dir is not None else default_prompts_dir()
    path = directory / name
    judge = _load_model(path, JudgeConfig)
    _check_judge(path, judge)
    return judge


def load_prompts(prompts_dir: str | Path | None = None) -> PromptSet:
    """Load and validate judge.yaml, oss_instruct.yaml and respond.yaml."""
    directory = Path(prompts_dir) if prompts_dir is not None else default_prompts_dir()
    oss_path = directory / FILES["oss_instruct"]
    respond_path = directory / FILES["respond"]
    judge = load_judge(FILES["judge"], directory)
    oss = _load_model(oss_path, OssInstructConfig)
    _check_oss(oss_path, oss)
    respond = _load_model(respond_path, RespondConfig)
    for index, example in enumerate(respond.examples):
        _check_response(respond_path, f"examples.{index}.response", example.response)
    return PromptSet(judge=judge, oss=oss, respond=respond, directory=str(directory))


@functools.lru_cache(maxsize=1)
def _packaged_prompts() -> PromptSet:
    # Cached because stages may ask for a version per batch; the packaged files
    # do not change while a job runs.
    return load_prompts()


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown prompt kind {kind!r}; expected one of {', '.join(KINDS)}")


def prompt_version(kind: str, cfg: PromptSet | None = None) -> str:
    """Version string stored with every row the step generates."""
    _check_kind(kind)
    prompts = cfg if cfg is not None else _packaged_prompts()
    if kind == "judge":
        return prompts.judge.version
    if kind == "respond":
        return prompts.respond.version
    return prompts.oss.version


# --- deterministic choices ------------------------------------------------------

def seeded_rng(seed_key: str, purpose: str) -> random.Random:
    """A generator private to one (seed key, purpose) pair, identical in every process."""
    digest = hashlib.sha256(f"{seed_key}:{purpose}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _shuffled(items: Sequence[T], seed_key: str, purpose: str) -> list[T]:
    order = list(items)
    seeded_rng(seed_key, purpose).shuffle(order)
    return order


def _drawn(items: Sequence[T], count: int, seed_key: str, purpose: str) -> list[T]:
    return seeded_rng(seed_key, purpose).sample(list(items), count)


def pick_category_difficulty(seed_key: str, cfg: PromptSet,
                             weights: Mapping[str, float] | None = None) -> tuple[str, str]:
    """The seed's task category (by weight; None: all of the prompt file's alike) and
    difficulty, the same in every process and run."""
    rng = seeded_rng(seed_key, "category-difficulty")
    table = dict(weights) if weights is not None else dict.fromkeys(cfg.oss.categories, 1.0)
    unknown = sorted(set(table) - set(cfg.oss.categories))
    if unknown:
        raise PromptConfigError(f"generation.categories: unknown {', '.join(map(repr, unknown))}; "
                                f"the prompts know {', '.join(map(repr, cfg.oss.categories))}")
    names = [name for name in cfg.oss.categories if table.get(name, 0) > 0]
    category = rng.choices(names, weights=[table[name] for name in names])[0]
    return category, rng.choice(cfg.oss.difficulties)


# --- layout ---------------------------------------------------------------------

def _code(text: str) -> str:
    # Keep the first line's indentation; only blank edges are noise.
    return text.strip("\n").rstrip()


def _fenced(code: str) -> str:
    return f"```python\n{_code(code)}\n```"


def _assemble(instruction: str, blocks: list[str]) -> str:
    return instruction.strip() + "\n\n" + "\n\n".join(blocks)


def split_docstring(code: str) -> tuple[str, str]:
    """(the first function's docstring, the code without it), so the judge reads the
    docstring apart from the code; ("", code) when there is none to split off. A body
    that was only the docstring keeps `...` in its place, so the code stays valid."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return "", code
    node = next((n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)), None)
    if node is None:
        return "", code
    first = node.body[0]
    if not (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        return "", code
    lines = code.splitlines(keepends=True)
    start, end = first.lineno - 1, first.end_lineno or first.lineno
    if lines[start][: first.col_offset].strip():
        return "", code  # the docstring shares its line with the def: left in place
    keep = [] if node.body[1:] else [" " * first.col_offset + "...\n"]
    return inspect.cleandoc(first.value.value), "".join(lines[:start] + keep + lines[end:])


def _judge_block(number: int, code: str, answer: str, reason: str = "") -> str:
    docstring, rest = split_docstring(code)
    lines = [f"{SEPARATOR} Function {number} {SEPARATOR}", "Docstring:", docstring or "(none)",
             "Code:", _fenced(rest), f"Answer: {answer}".rstrip()]
    if reason.strip():
        lines.append(f"Reason: {reason.strip()}")
    return "\n".join(lines)


# StarCoder2's GitHub-issue format: special tokens and anonymised user names.
ISSUE_START, ISSUE_COMMENT = "<issue_start>", "<issue_comment>"
ASKER, HELPER = "username_0", "username_1"
_JUDGE_SLOT = re.compile(r"\{(docstring|code)\}")


def _issue_thread(cfg: JudgeConfig, code: str, answer: str, reason: str = "") -> str:
    """One function as an issue: the asker's post with the docstring and the code, then
    the reply, ending on the answer (and its reason) or, for the query, right before it."""
    docstring, rest = split_docstring(code)
    values = {"docstring": docstring or "(none)", "code": _code(rest)}
    # One pass, so a docstring holding "{code}" is not filled in again.
    post = _JUDGE_SLOT.sub(lambda found: values[found.group(1)], cfg.instruction.strip())
    thread = f"{ISSUE_START}{ASKER}: {post}{ISSUE_COMMENT}{HELPER}: {cfg.reply.strip()}"
    if not answer:
        return thread
    return f"{thread} {answer}" + (f"\n\n{reason.strip()}" if reason.strip() else "")


def _concepts_block(number: int, snippet: str, concepts: str) -> str:
    # The query passes no concepts and ends on the bare label: a prompt ending in a
    # space tokenizes badly, so the model supplies the space with its first token.
    answer = f" {concepts.strip()}" if concepts.strip() else ""
    return f"{SEPARATOR} Example {number} {SEPARATOR}\nCode:\n{_fenced(snippet)}\nConcepts:{answer}"


def _instruct_block(number: int, concepts: str, category: str, difficulty: str, task: str) -> str:
    # The query passes no task and so ends right after "Task:\n".
    return (
        f"{SEPARATOR} Example {number} {SEPARATOR}\n"
        f"Concepts: {concepts}\nCategory: {category}\nDifficulty: {difficulty}\n"
        f"Task:\n{task.strip()}"
    )


def _respond_block(task: str, response: str) -> str:
    return f"{SEPARATOR} Task {SEPARATOR}\n{task.strip()}\n\n{SEPARATOR} Response {SEPARATOR}\n{response}"


# --- builders -------------------------------------------------------------------

def judge_prompt(fn_code: str, cfg: PromptSet, seed_key: str) -> str:
    """All judge examples in a per-key order, then the function; ends on "Answer:"
    (layout issue: one thread per example, the query's ending on the reply's opening)."""
    examples = _shuffled(cfg.judge.examples, seed_key, "judge")
    if cfg.judge.layout == "issue":
        threads = [_issue_thread(cfg.judge, ex.code, ex.answer, ex.reason) for ex in examples]
        return "\n\n".join([*threads, _issue_thread(cfg.judge, fn_code, "")])
    blocks = [
        _judge_block(number, ex.code, ex.answer, ex.reason)
        for number, ex in enumerate(examples, 1)
    ]
    query = _judge_block(len(blocks) + 1, fn_code, "")
    return _assemble(cfg.judge.instruction, [*blocks, query])


def concepts_prompt(snippet: str, cfg: PromptSet, seed_key: str) -> str:
    """`shots` examples drawn per key, then the snippet; ends on "Concepts:"."""
    examples = _drawn(cfg.oss.examples, cfg.oss.shots, seed_key, "concepts")
    blocks = [
        _concepts_block(number, ex.snippet, ex.concepts) for number, ex in enumerate(examples, 1)
    ]
    query = _concepts_block(len(blocks) + 1, snippet, "")
    return _assemble(cfg.oss.concepts_instruction, [*blocks, query])


def _one_line(concepts: Sequence[str]) -> str:
    cleaned = [" ".join(concept.split()) for concept in concepts if concept.strip()]
    if not cleaned:
        raise ValueError("instruct_prompt needs at least one concept")
    return ", ".join(cleaned)


def instruct_prompt(
    concepts: Sequence[str], category: str, difficulty: str, cfg: PromptSet, seed_key: str
) -> str:
    """`shots` examples drawn per key, then the concepts; ends after "Task:" and a newline."""
    if category not in cfg.oss.categories:
        raise ValueError(f"unknown category {category!r}; configured: {cfg.oss.categories}")
    if difficulty not in cfg.oss.difficulties:
        raise ValueError(f"unknown difficulty {difficulty!r}; configured: {cfg.oss.difficulties}")
    examples = _drawn(cfg.oss.examples, cfg.oss.shots, seed_key, "instruct")
    blocks = [
        _instruct_block(number, ex.concepts.strip(), ex.category, ex.difficulty, ex.instruction)
        for number, ex in enumerate(examples, 1)
    ]
    query = _instruct_block(len(blocks) + 1, _one_line(concepts), category, difficulty, "")
    return _assemble(cfg.oss.instruct_instruction, [*blocks, query])


def respond_prompt(instruction: str, cfg: PromptSet, seed_key: str) -> str:
    """One worked example drawn per key, then the task; ends on the "## Reasoning" line."""
    [example] = _drawn(cfg.respond.examples, 1, seed_key, "respond")
    shot = _respond_block(example.instruction, example.response.strip())
    query = _respond_block(instruction, RESPONSE_OPENING)
    return _assemble(cfg.respond.instruction, [shot, query])

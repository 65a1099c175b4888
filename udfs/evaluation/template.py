"""The wording of instruct-format evaluation prompts: a versioned YAML file in conf/prompts/.

`evaluate.instruct_template` names the file: eval_instruct.yaml (the default, selfalign's
layout) or eval_instruct_published.yaml (the published evaluation's layout, wording ours),
or a file of the user's own, relative to `generation.prompts_dir` or absolute. Per task
style it holds the instruction and the opening of the response, with slots replaced
literally and in one pass (code may hold braces, or a slot's name):

- humaneval (HumanEval, HumanEval+): `{prompt}`, the task's prompt (imports, signature
  and docstring) with the whitespace around it stripped;
- mbpp (MBPP, MBPP+): `{task}`, the task's text, and `{assertion}`, its first assert.
  `task_period: true` ends a task text that lacks one with "." (as published).

The layout around it (the SFT template, the stop at the closing fence) is code:
udfs/evaluation/instruct.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path

# The loading rules and error lines of the other prompt files (udfs/prompts.py).
from udfs.prompts import Text, _fail, _load_model, _Model, default_prompts_dir

DEFAULT_FILE = "eval_instruct.yaml"
PUBLISHED_FILE = "eval_instruct_published.yaml"
SLOT = re.compile(r"\{(prompt|task|assertion)\}")


class HumanEvalWording(_Model):
    instruction: Text  # holds {prompt} exactly once
    response: str  # the response's opening; {prompt} at most once


class MbppWording(_Model):
    instruction: Text  # holds {task} and {assertion} exactly once each
    response: str  # the response's opening; no slot
    task_period: bool = False


class EvalInstructTemplate(_Model):
    version: Text
    humaneval: HumanEvalWording
    mbpp: MbppWording


def fill(text: str, values: Mapping[str, str]) -> str:
    """`text` with each slot replaced by its value, in one pass (values are not re-read)."""
    return SLOT.sub(lambda found: values[found.group(1)], text)


def template_path(name: str, prompts_dir: str | Path | None = None) -> Path:
    """`name` under prompts_dir (the packaged conf/prompts when None); an absolute path as is."""
    directory = Path(prompts_dir) if prompts_dir is not None else default_prompts_dir()
    return directory / name


_RULES: tuple[tuple[str, str, tuple[int, ...]], ...] = (
    # (key, slot, allowed counts)
    ("humaneval.instruction", "{prompt}", (1,)),
    ("humaneval.response", "{prompt}", (0, 1)),
    ("humaneval.instruction", "{task}", (0,)),
    ("humaneval.instruction", "{assertion}", (0,)),
    ("humaneval.response", "{task}", (0,)),
    ("humaneval.response", "{assertion}", (0,)),
    ("mbpp.instruction", "{task}", (1,)),
    ("mbpp.instruction", "{assertion}", (1,)),
    ("mbpp.instruction", "{prompt}", (0,)),
    ("mbpp.response", "{task}", (0,)),
    ("mbpp.response", "{assertion}", (0,)),
    ("mbpp.response", "{prompt}", (0,)),
)


def load_eval_template(name: str = DEFAULT_FILE,
                       prompts_dir: str | Path | None = None) -> EvalInstructTemplate:
    """The named file, checked: each slot where it belongs, as often as it may appear."""
    path = template_path(name, prompts_dir)
    template = _load_model(path, EvalInstructTemplate)
    for key, slot, counts in _RULES:
        style, field = key.split(".")
        text: str = getattr(getattr(template, style), field)
        if text.count(slot) not in counts:
            times = "exactly once" if counts == (1,) else "at most once" if 1 in counts else "nowhere"
            raise _fail(path, key, f"must hold {slot} {times}")
    return template

"""The instruct format of the evaluation of instruction-tuned models.

- HumanEval(+): an instruction that shows the function's prompt, and the response opens
  a Python code block (which may already hold that prompt, so the model writes the body);
- MBPP(+): the task text, "Your code should pass the following assertion:" and the
  task's first test, and the response opens an empty Python code block.

The wording and the response's openings are data: the file `evaluate.instruct_template`
names (udfs/evaluation/template.py; conf/prompts/eval_instruct.yaml by default). Both end
where the model closes the code block (`INSTRUCT_STOP`); greedy and 512 tokens are
evaluate's defaults. The instruction and the response's opening go through the same
`SftTemplate` the model was trained with. A chat server applies its own template and
cannot be handed the response's opening, so it gets the instruction alone and its
answer's code block is taken (udfs.evaluation.programs.extract_code).
"""

from __future__ import annotations

from udfs.evaluation.problems import Problem
from udfs.evaluation.template import EvalInstructTemplate, fill
from udfs.prompts import SftTemplate

INSTRUCT_STOP = ("\n```",)


def docstring_task(prompt: str) -> tuple[str, str]:
    """(task text, first assert) of an MBPP-style prompt: a docstring holding the task's
    text, then one assert line."""
    body = prompt.strip()
    for quote in ('"""', "'''"):
        if body.startswith(quote) and body.endswith(quote) and len(body) >= 2 * len(quote):
            body = body[len(quote):-len(quote)]
    lines = body.strip("\n").split("\n")
    tests = [i for i, line in enumerate(lines) if line.lstrip().startswith("assert")]
    if not tests:
        return body.strip(), ""
    first = tests[0]
    return "\n".join(lines[:first]).strip(), "\n".join(lines[first:]).strip()


def instruct_parts(problem: Problem, wording: EvalInstructTemplate) -> tuple[str, str]:
    """(instruction, the response's opening) of one problem, in `wording`."""
    if problem.style == "complete":
        values = {"prompt": problem.prompt.strip()}
        return fill(wording.humaneval.instruction, values), fill(wording.humaneval.response, values)
    text, test = docstring_task(problem.prompt)
    if wording.mbpp.task_period and text and not text.endswith("."):
        text += "."  # the published rule: "?" or ")" at the end gets one too
    if not test:  # not an MBPP prompt (another file's): the task text alone
        return text, wording.mbpp.response
    values = {"task": text, "assertion": test}
    return fill(wording.mbpp.instruction, values), wording.mbpp.response


def instruct_prompt(problem: Problem, template: SftTemplate | None,
                    wording: EvalInstructTemplate) -> str:
    """The whole prompt: the template's prompt part with the instruction, then the
    response's opening; with no template (a chat server), the instruction alone."""
    instruction, opening = instruct_parts(problem, wording)
    if template is None:
        return instruction
    return template.prompt(instruction) + opening

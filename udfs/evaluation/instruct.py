"""The instruct prompt format of the published evaluation of instruction-tuned models.

- HumanEval(+): an instruction that shows the function's prompt, and the response opens
  a Python code block that already holds that prompt, so the model writes the body;
- MBPP(+): the task text, "Your code should pass the following assertion:" and the
  task's first test, and the response opens an empty Python code block.

Both end where the model closes the code block (`INSTRUCT_STOP`); greedy and 512 tokens
are evaluate's defaults. The instruction and the response's opening go through the
same `SftTemplate` the model was trained with. A chat server applies its own template
and cannot be handed the response's opening, so it gets the instruction alone and its
answer's code block is taken (udfs.evaluation.programs.extract_code).
"""

from __future__ import annotations

from udfs.evaluation.problems import Problem
from udfs.prompts import SftTemplate

INSTRUCT_STOP = ("\n```",)
FENCE = "```python\n"
# Our wording; the MBPP line is the published format's (it is also what select's
# sanitizing step teaches: "Your code should pass the following assertion(s)").
COMPLETE_ASK = ("Finish the Python function below. Keep its signature and make it do what "
                "its docstring describes.")
ASSERTION_LINE = "Your code should pass the following assertion:"


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


def instruct_parts(problem: Problem) -> tuple[str, str]:
    """(instruction, the response's opening) of one problem."""
    if problem.style == "complete":
        code = problem.prompt.strip("\n")
        return f"{COMPLETE_ASK}\n\n{FENCE}{code}\n```", FENCE + problem.prompt.lstrip("\n")
    text, test = docstring_task(problem.prompt)
    if not test:
        return text, FENCE
    return f"{text}\n{ASSERTION_LINE}\n{FENCE}{test}\n```", FENCE


def instruct_prompt(problem: Problem, template: SftTemplate | None) -> str:
    """The whole prompt: the template's prompt part with the instruction, then the
    response's opening; with no template (a chat server), the instruction alone."""
    instruction, opening = instruct_parts(problem)
    if template is None:
        return instruction
    return template.prompt(instruction) + opening

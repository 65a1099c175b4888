"""The evaluation's instruct wording as a file, and what `--profile published` evaluates
with: the published layout, MBPP+ v0.1.0 and the BOS (no Spark session is started)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from jobs.core.config import load_config
from jobs.core.failures import StageError
from jobs.stages import evaluate_plan
from udfs.evaluation import Problem, mbpp_prompt
from udfs.evaluation.instruct import instruct_parts, instruct_prompt
from udfs.evaluation.template import PUBLISHED_FILE, load_eval_template, template_path
from udfs.prompts import PromptConfigError, load_sft_template

STUB = 'from typing import List\n\n\ndef inc(xs: List[int]) -> List[int]:\n    """Add one to each."""\n'
HUMANEVAL = Problem("humaneval", "HumanEval/0", "\n" + STUB, "inc", "    return [x + 1 for x in xs]\n",
                    "complete")
MBPP = Problem("mbpp", "Mbpp/9", mbpp_prompt("Write a function to add two numbers",
                                             "assert add(1, 2) == 3"),
               "add", "def add(a, b):\n    return a + b\n", "write")


def published(*overrides: str):
    return load_config(None, list(overrides), profiles=["published"])


# --- the wording file ----------------------------------------------------------------------

def test_the_published_layout_of_mbpp():
    instruction, opening = instruct_parts(MBPP, load_eval_template(PUBLISHED_FILE))
    # A period after the task, then a blank line, then the assertion block.
    assert instruction == ("Write a function to add two numbers.\n\nYour code should pass the following "
                           "assertion:\n```python\nassert add(1, 2) == 3\n```")
    assert opening == "\n```python"  # the leading newline, and no newline after the fence


def test_a_task_that_ends_with_a_period_gets_no_second_one():
    problem = Problem("mbpp", "Mbpp/9", mbpp_prompt("Add them.", "assert add(1, 2) == 3"), "add", "", "write")
    instruction, _ = instruct_parts(problem, load_eval_template(PUBLISHED_FILE))
    assert instruction.startswith("Add them.\n\n") and ".." not in instruction


def test_the_published_layout_of_humaneval():
    instruction, opening = instruct_parts(HUMANEVAL, load_eval_template(PUBLISHED_FILE))
    header, fence, rest = instruction.split("\n", 2)
    # One header line, the code block right under it, holding the stripped prompt.
    assert header and "```" not in header and fence == "```python"
    assert rest == STUB.strip() + "\n```"
    # The model continues right after the docstring's closing quotes.
    assert opening == "\n```python\n" + STUB.strip()


def test_the_published_prompt_has_a_blank_line_after_the_response_header():
    template = load_sft_template()
    # Training's prompt ends with the response header's line: the response follows at once.
    header = template.prompt("").rstrip("\n").rsplit("\n", 1)[-1] + "\n"
    for problem in (MBPP, HUMANEVAL):
        prompt = instruct_prompt(problem, template, load_eval_template(PUBLISHED_FILE))
        default = instruct_prompt(problem, template, load_eval_template())
        assert header + "\n```python" in prompt
        assert header + "```python" in default and header + "\n```" not in default


def test_the_default_file_keeps_selfalign_s_layout():
    instruction, opening = instruct_parts(MBPP, load_eval_template())
    assert instruction.startswith("Write a function to add two numbers\nYour code should pass")
    assert opening == "```python\n"


def test_slots_are_filled_literally_and_once(tmp_path: Path):
    text = "Say {assertion} and {x}"
    problem = Problem("mbpp", "Mbpp/9", mbpp_prompt(text, "assert f('{task}') == 1"), "f", "", "write")
    instruction, _ = instruct_parts(problem, load_eval_template())
    assert instruction.startswith("Say {assertion} and {x}\n")  # the task text is not re-read
    assert "assert f('{task}') == 1" in instruction


def write_wording(directory: Path, name: str, **changes: object) -> Path:
    raw = yaml.safe_load(template_path(PUBLISHED_FILE).read_text())
    for dotted, value in changes.items():
        style, key = dotted.split("__")
        raw[style][key] = value
    path = directory / name
    path.write_text(yaml.safe_dump(raw))
    return path


def test_a_user_file_replaces_the_wording(tmp_path: Path):
    path = write_wording(tmp_path, "mine.yaml", mbpp__instruction="Task: {task}\nCheck: {assertion}")
    by_path = load_eval_template(str(path))
    by_dir = load_eval_template("mine.yaml", tmp_path)
    assert by_path == by_dir
    assert instruct_parts(MBPP, by_path)[0] == (
        "Task: Write a function to add two numbers.\nCheck: assert add(1, 2) == 3")


@pytest.mark.parametrize(("change", "message"), [
    ({"humaneval__instruction": "Finish it."}, "key 'humaneval.instruction': must hold {prompt} exactly once"),
    ({"mbpp__instruction": "{task} {task} {assertion}"}, "key 'mbpp.instruction': must hold {task} exactly once"),
    ({"mbpp__response": "```python\n{assertion}"}, "key 'mbpp.response': must hold {assertion} nowhere"),
    ({"humaneval__response": "{prompt}{prompt}"}, "key 'humaneval.response': must hold {prompt} at most once"),
    ({"mbpp__task_period": "yes"}, "key 'mbpp.task_period'"),
])
def test_a_broken_wording_file_is_refused_naming_the_key(tmp_path: Path, change: dict[str, object],
                                                         message: str):
    path = write_wording(tmp_path, "broken.yaml", **change)
    with pytest.raises(PromptConfigError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_eval_template(str(path))


# --- what the published profile evaluates with -------------------------------------------------

def test_the_published_profile_selects_mbppplus_v010_its_layout_and_the_bos():
    default, chosen = load_config(None, []), published()
    assert default.evaluate.benchmark_files["mbppplus"] == "mbppplus-v0.2.0.jsonl.gz"
    assert chosen.evaluate.benchmark_files["mbppplus"] == "mbppplus-v0.1.0.jsonl.gz"
    assert chosen.decontaminate.benchmarks[-1].path == "mbppplus-v0.2.0.jsonl.gz"  # scoring only
    assert (default.evaluate.instruct_template, chosen.evaluate.instruct_template) == (
        "eval_instruct.yaml", PUBLISHED_FILE)
    assert (default.evaluate.add_bos, chosen.evaluate.add_bos) == ("auto", True)


def test_the_engine_is_asked_for_one_bos_where_it_tokenizes():
    for engine in ("vllm", "transformers"):
        params = evaluate_plan.decodings(published(f"llm.engine={engine}"))
        assert params["greedy"].add_bos is True
        auto = evaluate_plan.decodings(load_config(None, [f"llm.engine={engine}",
                                                     "evaluate.prompt_format=instruct"]))
        assert auto["greedy"].add_bos is True
    # Base models in the completion format: the tokenizer's own default, as before.
    assert evaluate_plan.decodings(load_config(None, ["llm.engine=vllm"]))["greedy"].add_bos is None
    never = load_config(None, ["llm.engine=vllm", "evaluate.prompt_format=instruct", "evaluate.add_bos=false"])
    assert evaluate_plan.decodings(never)["greedy"].add_bos is False
    # A chat server's template places the BOS: nothing to ask for.
    chat = published("llm.engine=openai", "llm.api=chat")
    assert evaluate_plan.decodings(chat)["greedy"].add_bos is None


def test_a_server_that_tokenizes_itself_is_refused_an_explicit_bos():
    with pytest.raises(StageError, match=r"evaluate\.add_bos=true needs the token ids.*llm\.engine=openai"):
        evaluate_plan.decodings(published("llm.engine=openai"))
    relaxed = published("llm.engine=openai", "evaluate.add_bos=auto")
    assert evaluate_plan.decodings(relaxed)["greedy"].add_bos is None


def test_the_eval_id_changes_with_the_files_the_wording_and_the_bos():
    def eval_id(*overrides: str) -> str:
        cfg = load_config(None, ["llm.engine=vllm", "evaluate.prompt_format=instruct", *overrides])
        params = evaluate_plan.decodings(cfg)
        wording = evaluate_plan.instruct_wording(cfg)
        return evaluate_plan.eval_id(cfg, params, evaluate_plan.instruct_template(cfg), wording)

    base = eval_id()
    assert eval_id() == base
    assert eval_id("evaluate.files.mbppplus=mbppplus-v0.1.0.jsonl.gz") != base
    # MBPP alone still takes its task ids from the MBPP+ file.
    only_mbpp = ("evaluate.sets=[mbpp]",)
    assert eval_id(*only_mbpp, "evaluate.files.mbppplus=mbppplus-v0.1.0.jsonl.gz") != eval_id(*only_mbpp)
    assert eval_id(f"evaluate.instruct_template={PUBLISHED_FILE}") != base
    assert eval_id("evaluate.add_bos=false") != base


def test_the_published_plan_prompts_in_the_published_layout():
    cfg = published("llm.engine=vllm")
    wording = evaluate_plan.instruct_wording(cfg)
    plan = evaluate_plan.Plan(eval_id="x", model="m", settings=evaluate_plan.exec_settings(cfg), workers=1,
                         params=evaluate_plan.decodings(cfg), stop=None, seed=0, prompt_format="instruct",
                         template=evaluate_plan.instruct_template(cfg), wording=wording)
    prompt, stop = evaluate_plan.engine_prompt(MBPP, plan)
    assert prompt.endswith("\n\n```python") and "two numbers.\n\nYour code" in prompt
    assert stop == ("\n```",)


def test_a_missing_wording_file_is_one_line_naming_it(tmp_path: Path):
    cfg = load_config(None, ["evaluate.prompt_format=instruct", f"generation.prompts_dir={tmp_path}"])
    with pytest.raises(StageError, match=r"evaluate: prompts: file not found: .*eval_instruct\.yaml"):
        evaluate_plan.instruct_wording(cfg)

"""Training and evaluation agree on the prompt's token ids: one BOS first, then the same
prompt, whatever the tokenizer adds by default (tiny tokenizers built at test time)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("torch")

from tests.tiny_model import EOS, PAD, build_tiny_model, corpus_texts
from udfs.evaluation import Problem, mbpp_prompt
from udfs.evaluation.instruct import instruct_parts
from udfs.evaluation.template import PUBLISHED_FILE, load_eval_template
from udfs.llm import EngineSettings, SamplingParams
from udfs.llm import vllm as llm_vllm
from udfs.llm.transformers_engine import TransformersEngine, encode_prompt
from udfs.prompts import load_sft_template
from udfs.training.data import IGNORE, encode_pair

LLAMA_BOS = "<s>"
PROBLEMS = (
    Problem("humaneval", "HumanEval/0", 'def inc(x: int) -> int:\n    """Add one."""\n', "inc",
            "    return x + 1\n", "complete"),
    Problem("mbpp", "Mbpp/9", mbpp_prompt("Write a function to add two numbers", "assert add(1, 2) == 3"),
            "add", "def add(a, b):\n    return a + b\n", "write"),
)
RESPONSE = "def add(a, b):\n    return a + b\n```"


def tokenizer(kind: str) -> Any:
    """starcoder2: BOS = EOS, and encoding adds nothing (a GPT-2 style tokenizer);
    llama: a BOS of its own that encoding adds (add_special_tokens=True)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(corpus_texts(60), trainers.BpeTrainer(
        vocab_size=400, special_tokens=[EOS, PAD, LLAMA_BOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False))
    if kind == "starcoder2":
        return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, bos_token=EOS, pad_token=PAD)
    bos_id = bpe.token_to_id(LLAMA_BOS)
    bpe.post_processor = processors.TemplateProcessing(
        single=f"{LLAMA_BOS} $A", special_tokens=[(LLAMA_BOS, bos_id)])
    return PreTrainedTokenizerFast(tokenizer_object=bpe, eos_token=EOS, bos_token=LLAMA_BOS, pad_token=PAD)


@pytest.fixture(scope="module", params=["starcoder2", "llama"])
def tok(request: pytest.FixtureRequest) -> Any:
    return tokenizer(request.param)


def transformers_ids(tok: Any, text: str, add_bos: bool | None) -> list[int]:
    """The input_ids the transformers engine hands model.generate."""
    return encode_prompt(tok, text, add_bos)["input_ids"][0].tolist()


def vllm_ids(tok: Any, text: str, add_bos: bool | None) -> list[int] | str:
    """What the vllm engine hands LLM.generate: token ids, or the text itself."""
    llm = SimpleNamespace(get_tokenizer=lambda: tok)
    [item] = llm_vllm.engine_inputs(llm, [text], [SamplingParams(add_bos=add_bos)])
    return item["prompt_token_ids"] if isinstance(item, dict) else item


def training_prompt(tok: Any, instruction: str) -> list[int]:
    """The prompt part of what training encodes for this instruction (labels IGNORE)."""
    pair = encode_pair(tok, load_sft_template().prompt(instruction), RESPONSE, max_length=100_000)
    assert pair is not None
    return pair.input_ids[:pair.labels.count(IGNORE)]


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.benchmark)
def test_evaluation_sends_the_training_prompt_after_exactly_one_bos(tok: Any, problem: Problem):
    wording = load_eval_template()
    instruction, opening = instruct_parts(problem, wording)
    text = load_sft_template().prompt(instruction) + opening
    trained = training_prompt(tok, instruction)
    assert trained[0] == tok.bos_token_id
    for sent in (transformers_ids(tok, text, True), vllm_ids(tok, text, True)):
        assert isinstance(sent, list)
        assert sent[0] == tok.bos_token_id and sent.count(tok.bos_token_id) == 1  # never two
        # Token for token the training prompt, then the response's opening.
        assert sent[:len(trained)] == trained
        assert tok.decode(sent[len(trained):]) == opening


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: p.benchmark)
def test_the_published_layout_keeps_the_bos_and_the_text(tok: Any, problem: Problem):
    instruction, opening = instruct_parts(problem, load_eval_template(PUBLISHED_FILE))
    prompt = load_sft_template().prompt(instruction)
    sent = transformers_ids(tok, prompt + opening, True)
    trained = training_prompt(tok, instruction)
    assert sent[0] == tok.bos_token_id and sent.count(tok.bos_token_id) == 1
    assert tok.decode(sent, skip_special_tokens=False) == tok.bos_token + prompt + opening
    # The opening's leading newline may merge with the prompt's last one (tokenized in one
    # piece, as published): all but the training prompt's last token agree.
    assert sent[:len(trained) - 1] == trained[:len(trained) - 1]


def test_without_the_setting_the_bos_depends_on_the_tokenizer():
    """Why the setting exists: given text, a StarCoder2-like tokenizer adds no BOS, so the
    model saw one in training and none in evaluation; add_bos=False drops a Llama's."""
    text = load_sft_template().prompt("x")
    starcoder2, llama = tokenizer("starcoder2"), tokenizer("llama")
    assert transformers_ids(starcoder2, text, None)[0] != starcoder2.bos_token_id
    assert vllm_ids(starcoder2, text, None) == text  # vLLM tokenizes it the same default way
    assert transformers_ids(llama, text, None).count(llama.bos_token_id) == 1
    assert llama.bos_token_id not in transformers_ids(llama, text, False)
    assert transformers_ids(starcoder2, text, False) == starcoder2.encode(text)


def test_the_vllm_engine_sends_token_ids_and_measures_them(monkeypatch):
    tok = tokenizer("starcoder2")
    calls: list[list[Any]] = []

    class StandInLLM:
        llm_engine = SimpleNamespace(model_config=SimpleNamespace(max_model_len=40))

        def get_tokenizer(self) -> Any:
            return tok

        def generate(self, prompts: list[Any], params: list[Any], use_tqdm: bool) -> list[Any]:
            calls.append(prompts)
            return [SimpleNamespace(prompt_token_ids=p["prompt_token_ids"], outputs=[
                SimpleNamespace(index=0, text="ok", finish_reason="stop", token_ids=[1])]) for p in prompts]

    monkeypatch.setitem(__import__("sys").modules, "vllm", SimpleNamespace(SamplingParams=dict))
    engine = llm_vllm.VLLMEngine(EngineSettings(engine="vllm"))
    engine._llm = StandInLLM()
    short, long_ = engine.generate(["def f():", "def f():\n" * 40], SamplingParams(add_bos=True))
    [sent] = calls[0]
    assert sent["prompt_token_ids"][0] == tok.bos_token_id
    assert short.completions[0].prompt_tokens == len(tok.encode("def f():")) + 1  # the BOS counted
    assert not long_.ok and "tokens" in (long_.error or "")


def test_vllm_reads_the_token_ids_as_a_tokens_prompt():
    pytest.importorskip("vllm", reason="the gpu extra (vllm) is not installed")
    from vllm.inputs.parse import parse_singleton_prompt

    tok = tokenizer("starcoder2")
    item = llm_vllm.engine_inputs(SimpleNamespace(get_tokenizer=lambda: tok), ["x"],
                                  [SamplingParams(add_bos=True)])[0]
    parsed = parse_singleton_prompt(item)  # pyright: ignore[reportArgumentType, reportCallIssue]
    assert parsed["type"] == "tokens" and parsed["content"]["prompt_token_ids"][0] == tok.bos_token_id


def test_the_transformers_engine_generates_from_the_bos_prompt(tmp_path: Path):
    """The real engine on a tiny model whose tokenizer has BOS = EOS (as StarCoder2's)."""
    from transformers import AutoTokenizer

    directory = build_tiny_model(tmp_path / "tiny")
    saved = AutoTokenizer.from_pretrained(directory)
    saved.bos_token = saved.eos_token
    saved.save_pretrained(directory)
    engine = TransformersEngine(EngineSettings(engine="transformers", model=str(directory), dtype="float32"))
    text = load_sft_template().prompt("Write add.")
    [with_bos] = engine.generate([text], SamplingParams(max_tokens=2, add_bos=True))
    [as_text] = engine.generate([text], SamplingParams(max_tokens=2))
    expected = len(training_prompt(saved, "Write add."))
    assert with_bos.completions[0].prompt_tokens == expected
    assert as_text.completions[0].prompt_tokens == expected - 1  # the tokenizer adds no BOS

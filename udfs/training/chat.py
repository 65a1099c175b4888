"""The chat template saved with a fine-tuned model's tokenizer: the layout it was trained
on (conf/prompts/sft_template.yaml), so `vllm serve <dir>` and transformers' chat
pipelines prompt it the way `selfalign train` taught it.

A user turn renders as the template's text before `{instruction}`, then the message; an
assistant turn (or the generation prompt) as the text between `{instruction}` and
`{response}`, then the message and EOS, exactly as the training pairs were laid out
(udfs/training/data.py: BOS, prompt, response, EOS). System messages have no place in that
layout and are refused.
"""

from __future__ import annotations

import json

from udfs.prompts import INSTRUCTION_SLOT, RESPONSE_SLOT, SftTemplate


def layout_parts(template: SftTemplate) -> tuple[str, str]:
    """The text before the instruction, and the text between it and the response."""
    before, rest = template.template.split(INSTRUCTION_SLOT, 1)
    return before, rest.split(RESPONSE_SLOT, 1)[0]


def chat_template(template: SftTemplate) -> str:
    """A Jinja chat template (Hugging Face's format) for the SFT layout."""
    before, between = (json.dumps(part) for part in layout_parts(template))
    return (
        "{{- bos_token if bos_token else '' -}}\n"
        "{%- for message in messages -%}\n"
        "{%- if message['role'] == 'user' -%}\n"
        f"{{{{- {before} + message['content'] -}}}}\n"
        "{%- elif message['role'] == 'assistant' -%}\n"
        f"{{{{- {between} + message['content'] + eos_token -}}}}\n"
        "{%- else -%}\n"
        "{{- raise_exception('only user and assistant turns: the model was trained without a "
        "system prompt') -}}\n"
        "{%- endif -%}\n"
        "{%- endfor -%}\n"
        f"{{%- if add_generation_prompt -%}}{{{{- {between} -}}}}{{%- endif -%}}"
    )

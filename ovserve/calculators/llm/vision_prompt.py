"""A chat request for a vision model, as its engine takes it: the chat template's text with GenAI's image tags where
the images were, the images loaded and checked, and the prompt's length counted (GenAI does not report it)."""

from __future__ import annotations

import numpy as np

from ovserve.calculators.llm.images import load_image, max_side
from ovserve.calculators.llm.schema import ChatCompletionRequest, ChatMessage, ImageContentPart
from ovserve.calculators.llm.tools import template_message, template_tools
from ovserve.calculators.llm.types import VisionLimits, VisionPrompt
from ovserve.engine.tokenizer import TextTokenizer
from ovserve.engine.vision import image_tag
from ovserve.errors import RequestError


def refuse_images(body: ChatCompletionRequest) -> None:
    """A model without a vision encoder refuses image parts, naming the first."""
    for number, message in enumerate(body.messages):
        for index, part in message.images():
            where = part.where.removesuffix(".image_url") if part.where else f"messages[{number}].content[{index}]"
            raise RequestError(f"'{where}' is an image, and this model takes text only", param=where,
                               code="invalid_value")


def message_content(message: ChatMessage, first_image: int) -> str:
    """A message's content for the template: its text parts (joined by newlines, as for text models) with the
    image tags of its images where they are."""
    if not isinstance(message.content, list):
        return message.content or ""
    pieces: list[str] = []
    last_was_text = False
    image = first_image
    for part in message.content:
        if isinstance(part, ImageContentPart):
            pieces.append(image_tag(image))
            image += 1
            last_was_text = False
        else:
            pieces.append(("\n" if last_was_text else "") + part.text)
            last_was_text = True
    return "".join(pieces)


def vision_prompt(body: ChatCompletionRequest, tokenizer: TextTokenizer, limits: VisionLimits,
                  variables: dict | None) -> tuple[VisionPrompt, np.ndarray]:
    """The request's :class:`VisionPrompt`, and its text's token ids (without the images)."""
    if body.alternatives:
        raise RequestError("'top_logprobs' is not supported on a vision model: its scoring pass cannot see the "
                           "images (logprobs: true, without top_logprobs, is)", param="top_logprobs",
                           code="unsupported_parameter")
    parts = [(number, index, part) for number, message in enumerate(body.messages)
             for index, part in message.images()]
    policy = limits.policy
    if len(parts) > policy.max_images:
        raise RequestError(f"'messages' hold {len(parts)} images, above this server's limit of {policy.max_images} "
                           f"per request", param="messages", code="invalid_value")
    images = tuple((load_image(part.image_url.url, policy,
                               part.where or f"messages[{number}].content[{index}].image_url"),
                    max_side(part.image_url.detail)) for number, index, part in parts)
    messages, seen = [], 0
    for number, message in enumerate(body.messages):
        role = "system" if message.role == "developer" else message.role
        messages.append(template_message(role, message_content(message, seen), message.tool_calls,
                                         message.tool_call_id, f"messages[{number}]"))
        seen += len(message.images())
    tools = template_tools(body.callable_tools()) or None
    try:
        text = tokenizer.apply_chat_template(messages, True, variables, tools)
    except Exception as error:  # template errors are the request's fault (roles, order)
        raise RequestError(f"the model's chat template rejected the messages: {error}", param="messages",
                           code="invalid_value") from None
    bare = text
    for number in range(len(images)):
        bare = bare.replace(image_tag(number), "")
    token_ids = tokenizer.encode_whole(bare, add_special_tokens=False)
    prompt_tokens = int(token_ids.size) + len(images) * limits.tokens_per_image
    return VisionPrompt(text, images, prompt_tokens), token_ids

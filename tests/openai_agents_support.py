"""A local model for the OpenAI Agents SDK tests: no network, deterministic answers and usage."""

from __future__ import annotations

from typing import Any

from agents.items import ModelResponse
from agents.models.interface import Model
from agents.usage import Usage
from openai.types.responses import (
    ResponseFunctionToolCall,
    ResponseOutputMessage,
    ResponseOutputText,
)

#: Usage every EchoModel response reports.
INPUT_TOKENS, OUTPUT_TOKENS = 11, 7


class EchoModel(Model):
    """Answers every request with the text of the last user message.

    With ``tool_name``, the first response of each run calls that tool
    instead (arguments ``{}``), and the answer follows its output.
    """

    def __init__(self, tool_name: str | None = None) -> None:
        self.seen_inputs: list[Any] = []
        self.tool_name = tool_name

    async def get_response(self, system_instructions: Any, input: Any, *args: Any, **kw: Any):
        self.seen_inputs.append(input)
        usage = Usage(
            requests=1,
            input_tokens=INPUT_TOKENS,
            output_tokens=OUTPUT_TOKENS,
            total_tokens=INPUT_TOKENS + OUTPUT_TOKENS,
        )
        items = input if isinstance(input, list) else [{"role": "user", "content": input}]
        if self.tool_name and items[-1].get("type") != "function_call_output":
            call = ResponseFunctionToolCall(
                id=f"fc_{len(self.seen_inputs)}",
                call_id=f"call_{len(self.seen_inputs)}",
                type="function_call",
                name=self.tool_name,
                arguments="{}",
            )
            return ModelResponse(output=[call], usage=usage, response_id=None)
        last = [i for i in items if i.get("role") == "user"][-1]["content"]
        message = ResponseOutputMessage(
            id=f"msg_{len(self.seen_inputs)}",
            type="message",
            role="assistant",
            status="completed",
            content=[ResponseOutputText(type="output_text", text=f"echo: {last}", annotations=[])],
        )
        return ModelResponse(output=[message], usage=usage, response_id=None)

    def stream_response(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("the tests do not stream")

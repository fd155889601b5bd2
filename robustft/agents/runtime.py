"""What every agent node shares: its role's model, the prompts, re-asks, and the node record.

`AgentRuntime.ask` is the one path from a node to a model: render the prompt, call the model (the
response store, the concurrency limit and retries live in `calls.ModelCalls`), re-ask when the
reply holds no usable answer, score the reply, and return a node record that goes into the
sample's state as it is (and so into samples.jsonl).

A chat sample (`state["conversation"]`: a system prompt and earlier turns) is sent as the
conversation it is: its earlier turns as they were, then the rendered prompt as the last user
message (the template's `question` is the last user turn). The node record keeps that last message
as its `prompt`; the earlier turns are in the sample's record once.

Open-ended responses are compared by meaning: `similarity` is the cosine of two texts' embeddings
from the run's embedder (`texts`, set by the runner), each vector cached in the response store.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from ..answers import asks_for_bare_answer, bare_answer, extract_answer
from ..config import ROLES, ModelConfig, RobustFTConfig
from ..entropy import response_score
from ..errors import ConfigError, ModelCallError
from ..method import method_of
from ..prompts import PromptLibrary, prompt_values
from ..backends.base import Generation, Messages
from ..backends.registry import ModelPool
from .calls import ModelCalls
from .state import NodeRecord, SampleState, node_asked, node_failed

if TYPE_CHECKING:
    from ..retrieval.texts import TextVectors


@dataclass
class AgentRuntime:
    config: RobustFTConfig
    task: str
    pool: ModelPool
    prompts: PromptLibrary
    calls: ModelCalls | None = None
    # Embeddings for comparing open-ended responses by meaning (the runner gives its embedder's).
    texts: "TextVectors | None" = None
    role_models: dict[str, ModelConfig] = field(init=False)
    # The role whose reply's score ranks relabels at selection (`Method.scored_role`).
    scoring: str = field(init=False)
    # Roles whose model has returned token logprobs in this run: only those are re-asked for a reply
    # that lacks them (a server that never gives logprobs must not triple every call).
    gives_logprobs: set[str] = field(init=False, default_factory=set)

    def __post_init__(self) -> None:
        # Resolved once: the call path caches per config object, and a role override builds a new one.
        self.role_models = {role: self.config.model_for(role) for role in ROLES}
        self.scoring = method_of(self.config, self.task).scored_role
        if self.calls is None:
            self.calls = ModelCalls(self.pool, None, self.config.denoise.concurrency)

    def prompt_values(self, state: SampleState) -> dict[str, Any]:
        return prompt_values(state["question"], state.get("options"), self.task, self.config.data.instruction)

    def render(self, prompt_name: str, state: SampleState, **extra: Any) -> str:
        """Prompt `prompt_name` for this sample, from the task's template."""
        return self.prompts.render(prompt_name, **self.prompt_values(state), **extra)

    @staticmethod
    def messages(state: SampleState, prompt: str) -> Messages:
        """What a model is sent: a chat sample's earlier turns as they were, then `prompt` in place
        of the last user turn (after `BARE_NOTE` when those turns ask for a bare answer)."""
        earlier = (state.get("conversation") or [])[:-1]
        if wants_bare_answer(state):
            prompt = BARE_NOTE + prompt
        return [*({"role": t["role"], "content": t["content"]} for t in earlier), {"role": "user", "content": prompt}]

    async def generate(self, role: str, prompt: str | Messages) -> Generation:
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt
        return await self.calls.call(self.role_models[role], messages, role)

    async def similarity(self, a: str, b: str) -> float:
        """Cosine similarity of the embeddings of two texts (open-ended responses)."""
        if self.texts is None:
            raise ConfigError("comparing open-ended responses needs embeddings, and this runtime has none: give "
                              "AgentRuntime texts=TextVectors(make_embedder(config.denoise), store)")
        return await self.texts.similarity(a, b)

    async def ask(self, role: str, prompt_name: str, state: SampleState, *,
                  parse: Callable[[str], str | None] | None = None, **extra: Any) -> NodeRecord:
        """Ask `role` with template `prompt_name`; re-ask while no answer can be read from the reply
        (and, for the role whose score drives selection, while a reply lacks the logprobs asked for).

        Raises ModelCallError when the model keeps failing; a reply without an answer is not an
        exception: the record carries answer None and an error note, and the graph decides.
        """
        prompt = self.render(prompt_name, state, **extra)
        messages = self.messages(state, prompt)
        read = bare_answer if wants_bare_answer(state) else extract_answer
        parse = parse or (lambda text: read(text, self.task, state.get("options")))
        # `role`: whose model (and so whose prices) answered; a node's name need not be a role (claim, relabel_judge)
        record = node_asked(messages[-1]["content"], role)
        method = self.config.denoise.score
        wants_score = role == self.scoring and self.role_models[role].logprobs
        for _ in range(self.config.denoise.parse_retries + 1):
            gen = await self.generate(role, messages)
            record["attempts"] += 1
            record["prompt_tokens"] += gen.prompt_tokens
            record["completion_tokens"] += gen.completion_tokens
            record["response"] = gen.text
            record["answer"] = parse(gen.text)
            record["score"] = response_score(method, gen, self.task)
            if gen.token_logprobs:
                self.gives_logprobs.add(role)
            unscored = wants_score and record["score"] is None and role in self.gives_logprobs
            if record["answer"] is not None and not unscored:
                break
        if record["answer"] is None:
            n = record["attempts"]
            record["error"] = f"no usable 'Answer:' line in the response ({n} attempt{'s' if n > 1 else ''})"
        return record


# A dataset system prompt such as "Answer with just the name" conflicts with a prompt that asks for
# reasoning and an `Answer:` line. The note settles it for this message; a model that still replies
# with the bare answer is read anyway (`answers.bare_answer`), so the sample is not lost.
BARE_NOTE = ("(For this message, follow the instructions below, even where the conversation above asked for "
             "the answer alone: end with the line \"Answer: \" and the answer, as short as asked.)\n\n")


def wants_bare_answer(state: SampleState) -> bool:
    """Whether the sample's system prompt or earlier user turns ask for the answer alone."""
    earlier = (state.get("conversation") or [])[:-1]
    return any(t.get("role") in ("system", "user") and asks_for_bare_answer(str(t.get("content") or ""))
               for t in earlier)


def failure(node: str, exc: ModelCallError) -> SampleState:
    """The state update of a node whose model kept failing: the sample ends as failed."""
    return SampleState(nodes={node: node_failed(str(exc))}, status="failed", error=str(exc))

"""Template-constrained decoding for backends without JSON-schema support (transformers).

A template is a sequence of parts: literal text, a choice among fixed strings, or a free line
of text ending in a newline. At each decoding step only tokens that keep the output a prefix of
some text the template accepts are allowed, so even a 135M model's output always parses: the
judge answers `Q1) A` ... `Q5) Unsure`, the question writer emits the exact MCQ format.
Plugs into transformers' `generate(prefix_allowed_tokens_fn=...)`.

Why not the JSON schema itself: a general JSON-schema engine is a library's job (vLLM and
OpenAI-compatible servers have one); these two fixed line formats need only this small matcher.
"""

from __future__ import annotations

from dataclasses import dataclass

from sumpref.judging.mcq import LETTERS, UNSURE

Part = tuple[str, object]  # ("lit", str) | ("choice", tuple[str, ...]) | ("line", int max_chars)


@dataclass(frozen=True)
class Template:
    parts: tuple[Part, ...]

    def __post_init__(self) -> None:
        for kind, arg in self.parts:
            if kind == "choice" and any(a != b and b.startswith(a) for a in arg for b in arg):
                raise ValueError(f"choice options must not be prefixes of each other: {arg}")


def judge_template(n: int) -> Template:
    parts: list[Part] = []
    for i in range(1, n + 1):
        parts += [("lit", f"Q{i}) "), ("choice", (*LETTERS, UNSURE)), ("lit", "\n")]
    return Template(tuple(parts))


def mcq_template(n: int, question_chars: int = 200, option_chars: int = 80) -> Template:
    parts: list[Part] = []
    for i in range(1, n + 1):
        parts += [("lit", f"Q{i}) "), ("line", question_chars)]
        for letter in LETTERS:
            parts += [("lit", f"{letter}. "), ("line", option_chars)]
        parts += [("lit", f"Q{i} Answer: "), ("choice", LETTERS), ("lit", "\n")]
    return Template(tuple(parts))


TEMPLATES = {"judge": judge_template, "mcq": mcq_template}


def make_template(spec: str) -> Template:
    """`"judge:5"` or `"mcq:5"`."""
    kind, _, n = spec.partition(":")
    if kind not in TEMPLATES or not n.isdigit():
        raise ValueError(f"unknown template spec {spec!r}; use judge:N or mcq:N")
    return TEMPLATES[kind](int(n))


class TemplateConstraint:
    """Allowed next tokens for a partial output under a template (per tokenizer vocabulary)."""

    def __init__(self, tokenizer, template: Template, eos_token_id: int):
        self.tok, self.template, self.eos = tokenizer, template, eos_token_id
        vocab = len(tokenizer)
        self.strings = tokenizer.batch_decode([[i] for i in range(vocab)])
        special = set(getattr(tokenizer, "all_special_ids", []) or []) | set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
        self.by_first: dict[str, list[int]] = {}
        self.plain: list[int] = []     # tokens with no newline: continue a free line
        self.line_end: list[int] = []  # tokens whose only newline is the last character
        for i, s in enumerate(self.strings):
            if not s or i in special:
                continue
            self.by_first.setdefault(s[0], []).append(i)
            if "\n" not in s:
                self.plain.append(i)
            elif s.index("\n") == len(s) - 1:
                self.line_end.append(i)

    def _prefix_tokens(self, options: list[str]) -> list[int]:
        """Tokens s such that s is a prefix of some option (options are the remaining texts)."""
        out = []
        for first in {o[0] for o in options if o}:
            for i in self.by_first.get(first, ()):
                s = self.strings[i]
                if any(o.startswith(s) for o in options):
                    out.append(i)
        return out

    def allowed(self, text: str) -> list[int]:
        pos = 0
        for kind, arg in self.template.parts:
            rest = text[pos:]
            if kind == "lit":
                if rest.startswith(arg):
                    pos += len(arg)
                    continue
                if arg.startswith(rest):
                    return self._prefix_tokens([arg[len(rest):]])
                return [self.eos]  # off-template (cannot happen under the constraint)
            if kind == "choice":
                done = next((c for c in arg if rest.startswith(c)), None)
                if done is not None:
                    pos += len(done)
                    continue
                partial = [c[len(rest):] for c in arg if c.startswith(rest)]
                return self._prefix_tokens(partial) if partial else [self.eos]
            if kind == "line":
                nl = rest.find("\n")
                if nl >= 0:
                    pos += nl + 1
                    continue
                if len(rest) >= arg:
                    return self.line_end
                return self.plain + self.line_end if rest.strip() else self.plain
        return [self.eos]

    def prefix_fn(self, prompt_len: int):
        """A `prefix_allowed_tokens_fn` for `generate` (left-padded batch, prompts of `prompt_len`)."""

        def fn(batch_id: int, input_ids) -> list[int]:
            return self.allowed(self.tok.decode(input_ids[prompt_len:].tolist(), skip_special_tokens=True))

        return fn

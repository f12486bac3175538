"""Constrained decoding: beam search restricted to answers of the action grammar, so no answer can fail to
parse (`generate.constrained=true`).

The grammar is the answer format's regular expression (`tla.data.text.answer_pattern`). At each step a beam
may continue with a token only if the text so far plus the token's text is still a prefix of some grammatical
answer (the `regex` module's partial matching), and may end only once the text is a whole answer (then ending
is the only choice). Only tokens whose characters all occur in the grammar are ever candidates (a few hundred
of a large vocabulary), and the allowed set of a text is cached: beams share prefixes. Byte-level
vocabularies (the tiny tokenizer, Qwen2's) hold every single character, so a grammatical continuation always
exists and every beam reaches a whole answer within `longest_answer` characters + the end token.
"""

from __future__ import annotations

from functools import lru_cache

import regex

from tla.data.text import answer_pattern, longest_answer


class AnswerGrammar:
    def __init__(self, tokenizer, answer_format: str, end_id: int, signed: bool = False):
        self.pattern = regex.compile(answer_pattern(answer_format, signed))
        self.end_id = int(end_id)
        self.tokenizer = tokenizer
        alphabet = (set(longest_answer(answer_format)) | set(answer_pattern(answer_format, signed))
                    | set("0123456789"))
        special = set(tokenizer.all_special_ids)
        self.candidates: list[tuple[int, str]] = []
        for i in range(len(tokenizer)):
            if i in special:
                continue
            text = tokenizer.decode([i])
            if text and set(text) <= alphabet:
                self.candidates.append((i, text))
        self.allowed_after = lru_cache(maxsize=100_000)(self._allowed_after)

    def max_tokens(self, answer_format: str) -> int:
        """Tokens a constrained answer can take at most: one per character, then the end token."""
        return len(longest_answer(answer_format)) + 1

    def _allowed_after(self, text: str) -> tuple[int, ...]:
        if self.pattern.fullmatch(text):
            return (self.end_id,)  # a whole answer: nothing may follow it
        ok = tuple(i for i, piece in self.candidates if self.pattern.fullmatch(text + piece, partial=True))
        # not reachable from a grammatical prefix; guards a tokenizer whose pieces cannot spell the grammar
        return ok or (self.end_id,)

    def prefix_allowed_tokens_fn(self, prompt_length: int):
        """For `model.generate(prefix_allowed_tokens_fn=...)`: (batch index, ids so far (prompt + answer))
        -> the token ids allowed next."""
        def allowed(_batch_id, input_ids) -> list[int]:
            answer = input_ids[prompt_length:].tolist()
            if answer and answer[-1] == self.end_id:  # a finished beam is padded by generate
                return [self.end_id]
            return list(self.allowed_after(self.tokenizer.decode(answer, skip_special_tokens=True)))
        return allowed

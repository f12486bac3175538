"""Tokenizer for the random-init tiny backbone, trained in-process so nothing is downloaded.

Byte-level BPE (any text stays encodable) with the VLM adapter's special tokens and one token per digit
(digits are split before BPE), trained on the prompt/answer corpus. Training is deterministic for a fixed
corpus, and the result is saved with the run so a run reloads exactly the same vocabulary.
"""

from __future__ import annotations

import itertools

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

from tla.data.text import contact_corpus, encode_action, instruction
from tla.policies.tla.adapters import VLMAdapter, adapter_for
from tla.sim.geometry import SHAPES as SIM_SHAPES

# the simulator's shapes (one registry: tla.sim.geometry.SHAPES), then names a user may add, so their
# instructions stay a few tokens long
CORPUS_SHAPES = (*SIM_SHAPES, "circle", "rectangle", "ellipse", "star")


def _corpus(adapter: VLMAdapter, answer: str = "action", extra_texts: tuple[str, ...] = (),
            signed: bool = False) -> list[str]:
    texts = [*adapter.template_texts] + [instruction(s) for s in CORPUS_SHAPES]
    if answer == "contact_action" or extra_texts:  # only then: the action-only vocabulary stays what
        texts += contact_corpus()                   # earlier runs used
    texts += list(extra_texts)  # e.g. the pretraining corpus's questions and answers
    grid = range(-160, 161, 7)  # covers every sign, digit count and separator of the answers
    texts += [
        encode_action((a / 100, b / 100, c / 100), signed=signed)
        for a, b, c in itertools.product(grid, grid[::5], grid[::5])
    ]
    return texts


def train_tiny_tokenizer(vocab_size: int = 512, adapter: VLMAdapter | None = None,
                         answer: str = "action", extra_texts: tuple[str, ...] = (),
                         signed: bool = False) -> PreTrainedTokenizerFast:
    adapter = adapter or adapter_for()
    specials = list(adapter.special_tokens)
    tok = Tokenizer(models.BPE(unk_token=None))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(adapter, answer, tuple(extra_texts), signed), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=adapter.end_token,
        pad_token=adapter.pad_token,
        additional_special_tokens=[t for t in specials if t != adapter.pad_token],
    )

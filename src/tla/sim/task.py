"""The task as words: the instruction for each peg shape (the env's `task_description`, the prompt's text,
the dataset's `instruction` column). It lives with the simulator, the lowest layer, so that the env can
state its task without importing the dataset code above it."""

from __future__ import annotations

INSTRUCTION_TEMPLATE = (
    "Given the tactile images during peg-in-hole insertion tasks. "
    "Predict the correct robot action to insert the {shape} peg. Predicted action: "
)


def instruction(shape: str) -> str:
    return INSTRUCTION_TEMPLATE.format(shape=shape)

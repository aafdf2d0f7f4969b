"""The project memory never continues the text just typed with itself (issue 19, item 1): the
kernel's match lookup on known histories, and the issue's prompts typed into an empty project
through the Engine (memory on, line mode, greedy, the shipped model), with the repetition guard
switched off so that the memory's own behaviour is what is tested."""
import numpy as np
import pytest

from completer.engine import Engine, Request
from completer.engine import guard as guard_module
from completer.memory import Memory
from completer.model.vocab import Vocab

VOCAB = Vocab([chr(c) for c in range(32, 127)] + ["\n"])
FLAT = np.full(len(VOCAB), -np.log(len(VOCAB)), np.float32)


def match_predictions(memory, ctx: str, generated: int = 0) -> list:
    """What each of the six match models predicts after ctx (None where it has nothing)."""
    _, _, inputs = memory.mix(VOCAB.encode(ctx), FLAT, generated)
    rows = inputs[2:]                                                        # (6, V)
    return [VOCAB.char(int(r.argmax())) if r.max() > r.min() else None for r in rows]


def test_an_occurrence_agreeing_only_with_generated_characters_is_never_followed():
    memory = Memory(VOCAB)
    memory.learn_text("value = compute(alpha)\n")
    real, gen = "x = [", "compute(alp"
    # the match agrees with "compute(alp" and no further ("[" against " "): all of it generated
    assert "h" in match_predictions(memory, real + gen, generated=0)        # as real text: followed
    assert match_predictions(memory, real + gen, generated=len(gen)) == [None] * 6
    # one real character more in the agreement ("c" typed, "ompute(alp" generated): evidence again
    assert "h" in match_predictions(memory, real + gen, generated=len(gen) - 1)


def test_the_context_itself_is_no_occurrence():
    memory = Memory(VOCAB)
    memory.learn_text("a = f(x, y")                  # the memory has read the cursor's text itself
    assert match_predictions(memory, "a = f(x, y") == [None] * 6   # nothing follows it yet
    memory.learn_text(")\n", "a = f(x, y")
    assert ")" in match_predictions(memory, "b = f(x, y")           # an earlier line is followed


PROMPTS = [
    "def add(a, b",
    "for i in range(",
    "class Foo:\n    def __init__(self, name, value",
    "if __name__ ",
    "self.assertEqual(",
    "import ",
    "class Session:\n    def get(self, url",
]


@pytest.fixture(scope="module")
def shipped():
    return Engine.from_checkpoint(memory=True)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_typing_the_issues_prompts_into_an_empty_project_never_loops(shipped, prompt, monkeypatch):
    # the guard off: a loop here would be the memory's (the guard has its own tests)
    monkeypatch.setattr(guard_module.Guard, "push", lambda self, ch: None)
    monkeypatch.setattr("completer.engine.service.cut_loop", lambda context, text: text)
    shipped.set_memory(False)
    shipped.set_memory(True)                          # a new, empty project
    shipped.open("new.py", "")
    try:
        for i, ch in enumerate(prompt):               # typed, asking at every keystroke as editors do
            shipped.edit("new.py", i, i, ch)
            out = shipped.complete("new.py", i + 1, Request(mode="line", decoder="greedy"))
            for c in out:
                assert not guard_module.has_loop(c.text, prompt[:i + 1]), (prompt[:i + 1], c.text)
    finally:
        shipped.close("new.py")

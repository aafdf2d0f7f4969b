"""The confidence gate: its features, its fit, its file, the frontends' threshold, and the
figures `completer eval` gives for it (--cold, --save-gate)."""
import json
import shutil

import numpy as np
import pytest

from completer import cli
from completer.engine import Engine
from completer.engine.gate import FEATURES, Gate, features, gate_path, repeats, shown
from completer.engine.requests import Completion
from completer.errors import CompleterError
from completer.evaluation.lines import accepted_chars, is_loop

F = len(FEATURES)


def test_loops_and_accepted_characters_by_hand():
    assert is_loop("add(a, badd(a, badd(a, b", "add(a, b):")
    assert is_loop(", value, value, value", ", value):")
    assert not is_loop(", value, value, value", ", value, value, value, value)")   # the truth repeats it
    assert not is_loop("x = [0, 1]", "x = [0, 1]") and not is_loop("a    b", "a")   # spaces are no unit
    assert not is_loop("aab", "") and is_loop("ababab", "")
    assert repeats("range(range(range(") and not repeats("range(x)")
    assert accepted_chars("foo(bar)", "foo(baz)") == 6 and accepted_chars("", "x") == 0


def completion(text, lps, cut=False):
    return Completion(text, float(sum(lps)), list(lps), cut=cut)


def test_features_by_hand():
    x = features(completion("foo(x):", [-0.5, -1.0, -0.1, -2.0, -0.2, -0.2, -0.5]), None, "line", 7)
    f = dict(zip(FEATURES, x))
    assert f["mean_lp"] == pytest.approx(-4.5 / 7) and f["min_lp"] == -2.0 and f["first_lp"] == -0.5
    assert f["log_len"] == pytest.approx(np.log(8)) and f["ends_closed"] == 1 and f["ends_open"] == 0
    assert f["memory"] == 0 and f["votes"] == 0 and f["looped"] == 0 and f["mode_block"] == 0
    assert f["read"] == 0 == dict(zip(FEATURES, features(completion("x", [-1.0]), None, "line", 7, read=500)))["read"]
    # the memory's first prediction: weight set s0 = (match length class 3 * 4 + order class 2) * 2 + agree
    V = 5
    inputs = np.full((8, V), -3.0, np.float32)
    inputs[2:5, 2] = -0.1          # three of the six match models predict id 2, the others are silent
    inputs[5:] = 0.0
    s = ((3 * 4 + 2) * 2 + 1) | (40 << 8)
    y = dict(zip(FEATURES, features(completion("ab, ab, ab, ", [-1.0] * 12), (s, inputs, None), "block", 2, True)))
    assert y["memory"] == 1 and y["match_len"] == 0.75 and y["order_seen"] == pytest.approx(2 / 3)
    assert y["agree"] == 1 and y["votes"] == 0.5 and y["looped"] == 1 and y["mode_block"] == 1
    assert y["ends_closed"] == 0 and y["ends_open"] == 1         # ends with "," (trailing space dropped)
    assert dict(zip(FEATURES, features(completion("ab, ab, ab, ", [-1.0] * 12), (s, inputs, None), "block", 0)))["votes"] == 0
    # how much the memory has read: log(1 + chars), clipped past the fitting set's range
    read = [dict(zip(FEATURES, features(completion("x", [-1.0]), (s, inputs, None), "line", 0, read=n)))["read"]
            for n in (0, 2000, 10**9)]
    assert read[0] == 0 and read[1] == pytest.approx(np.log(2001)) and read[2] == pytest.approx(np.log1p(2_000_000))
    inputs[6], inputs[6, 0] = -3.0, -0.2     # a fourth model predicts id 0
    assert dict(zip(FEATURES, features(completion("x", [-1.0]), (s, inputs, None), "line", 0)))["votes"] == pytest.approx(1 / 6)


def test_fit_learns_which_suggestions_are_right_and_the_file_round_trips(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, F))
    y = (rng.random(2000) < 1 / (1 + np.exp(-(2 * X[:, 0] - 1.5 * X[:, 11])))).astype(float)
    gate = Gate.fit(X, y, meta={"fitted_on": ["a.py"]})
    assert gate.w[0] > 1.0 and gate.w[11] < -0.8 and np.abs(np.delete(gate.w, [0, 11])).max() < 0.3
    p = gate.probs(X)
    assert abs(p.mean() - y.mean()) < 0.01                     # calibrated on average
    assert y[p > 0.8].mean() > 0.75 and y[p < 0.2].mean() < 0.25
    path = tmp_path / "m.gate.json"
    gate.save(path)
    again = Gate.load(path)
    assert again.meta["fitted_on"] == ["a.py"] and again.threshold == gate.threshold
    np.testing.assert_allclose(again.probs(X), p, atol=1e-5)
    assert gate.prob(X[3]) == pytest.approx(p[3])
    with pytest.raises(CompleterError, match="both outcomes"):
        Gate.fit(X[:10], np.zeros(10))


@pytest.mark.parametrize("change", ["not json", "features", "nan", "scale", "threshold", "short"])
def test_a_malformed_gate_file_is_one_clear_error(tmp_path, change):
    path = tmp_path / "m.gate.json"
    Gate(np.ones(F), 0.0, np.zeros(F), np.ones(F), 0.3).save(path)
    raw = json.loads(path.read_text())
    if change == "not json":
        path.write_text("{nope")
    else:
        if change == "features":
            raw["features"] = raw["features"][::-1]
        elif change == "nan":
            raw["weights"][2] = float("nan")
        elif change == "scale":
            raw["scale"][0] = 0
        elif change == "threshold":
            raw["threshold"] = 1.5
        else:
            raw["mean"] = raw["mean"][:-1]
        path.write_text(json.dumps(raw))
    with pytest.raises(CompleterError, match="gate"):
        Gate.load(path)
    assert Gate.load(tmp_path / "none.gate.json") is None


def ship_gate(checkpoint_path, tmp_path, bias: float, threshold: float = 0.5):
    """A copy of the checkpoint with a gate whose confidence is sigmoid(bias) for every suggestion."""
    ckpt = tmp_path / "model.safetensors"
    shutil.copy(checkpoint_path, ckpt)
    Gate(np.zeros(F), bias, np.zeros(F), np.ones(F), threshold).save(gate_path(ckpt))
    return ckpt


def test_the_engine_gives_each_completion_the_gates_confidence(tiny_checkpoint, tmp_path):
    from completer.engine import Request

    plain = Engine.from_checkpoint(tiny_checkpoint, memory=True)
    [c] = plain.complete_text("import os\n", Request(mode="line", max_chars=10))
    assert plain.gate is None and c.confidence is None and c.features.shape == (F,)
    assert c.features[FEATURES.index("memory")] == 1      # the memory's first prediction was seen
    assert c.features[FEATURES.index("read")] == pytest.approx(np.log1p(plain.memory.chars)) and plain.memory.chars >= 10
    fresh, alone = Engine.from_checkpoint(tiny_checkpoint, memory=True), Engine.from_checkpoint(tiny_checkpoint)
    [d] = fresh.complete_text("import os", Request(mode="char"))   # the cursor's line: nothing read yet
    [n] = alone.complete_text("import os", Request(mode="char"))
    assert fresh.memory.chars == 0 and d.features[FEATURES.index("memory")] == 0   # an empty memory: the network's
    assert (d.text, d.char_logprobs) == (n.text, n.char_logprobs)
    gated = Engine.from_checkpoint(ship_gate(tiny_checkpoint, tmp_path, bias=2.0))
    [g] = gated.complete_text("import os\n", Request(mode="line", max_chars=10))
    assert g.confidence == pytest.approx(1 / (1 + np.exp(-2.0)))
    assert shown([g], gated.gate, None) == [g] and shown([g], gated.gate, 0.9) == []
    assert shown([g], None, 0.99) == [g]                   # no gate: everything shows


def test_serve_gates_inline_completions_only(tiny_checkpoint, tmp_path):
    from completer.server.handlers import Session
    from completer.server.jsonrpc import RpcError

    session = Session(model=str(ship_gate(tiny_checkpoint, tmp_path, bias=0.0, threshold=0.6)))  # P = 0.5
    session.initialize({"capabilities": {}, "initializationOptions": {"budgetMs": 0}}, None)
    session.did_open({"textDocument": {"uri": "file:///b.py", "text": "import os\nx = "}})
    at = {"textDocument": {"uri": "file:///b.py"}, "position": {"line": 1, "character": 4},
          "context": {"triggerKind": 2}}
    assert session.inline_completion(at, None)["items"] == []           # 0.5 < the file's 0.6
    session.did_change_configuration({"settings": {"gate": 0.4}})
    assert session.inline_completion(at, None)["items"]
    session.did_change_configuration({"settings": {"gate": None}})    # back to the file's default
    assert session.inline_completion(at, None)["items"] == []
    menu = session.completion({"textDocument": {"uri": "file:///b.py"}, "position": at["position"]}, None)
    assert menu["items"]                                              # the menu is not gated
    for bad in (1.5, -0.1, "high", True):
        with pytest.raises(RpcError, match="setting gate"):
            session.did_change_configuration({"settings": {"gate": bad}})


def test_repl_gate_command_and_ghost_text(tiny_checkpoint, tmp_path):
    from completer.repl import commands
    from completer.repl.session import Session

    session = Session(Engine.from_checkpoint(ship_gate(tiny_checkpoint, tmp_path, bias=0.0, threshold=0.6)))
    assert commands.run(session, ":gate") == "gate default (0.6)"
    assert session.complete("import os\nx = ", 11, typing=True) == []
    assert session.complete("import os\nx = ", 11, menu=True)           # the menu is not gated
    assert commands.run(session, ":gate 0.3") == "gate 0.3"
    assert session.complete("import os\nx = ", 11, typing=True)
    assert commands.run(session, ":gate default") == "gate default (0.6)"
    for bad in (":gate 2", ":gate x"):
        with pytest.raises(CompleterError, match="gate"):
            commands.run(session, bad)


CODE = ("import os\n\n\ndef f(x):\n    return x + 1\n\n\nclass A:\n    def g(self, y):\n"
        "        if y:\n            return f(y)\n        return None\n")


def test_eval_cold_and_save_gate(tmp_path, tiny_checkpoint, capsys):
    """--cold reads each file's first N characters with a fresh memory; --save-gate fits a gate on
    the suggestions, which the next eval measures (--gate)."""
    files = []
    for i in range(3):
        files.append(tmp_path / f"m{i}.py")
        files[-1].write_text(CODE.replace("f(", f"f{i}(") * 8)
    args = ["eval", *map(str, files), "--model", str(tiny_checkpoint), "--cuts", "150"]
    out_gate = tmp_path / "fitted.gate.json"
    assert cli.main([*args, "--cold", "300", "--save-gate", str(out_gate), "--json"]) == 0
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert report["scenario"] == "cold" and report["cold_chars"] == 300 and report["chars"] == 900
    assert list(report["runs"]) == ["network", "memory"]
    for r in report["runs"].values():
        assert 0 <= r["shown"]["coverage"] <= 100 and r["shown"]["loops"] is not None
    gate = Gate.load(out_gate)
    assert 0 < gate.threshold < 1 and gate.meta["suggestions"] > 150 and gate.meta["scenario"] == "cold"
    assert cli.main([*args, "--save-gate", str(tmp_path / "set.json"), "--gate-threshold", "0.42"]) == 0
    assert Gate.load(tmp_path / "set.json").threshold == 0.42 and Gate.load(tmp_path / "set.json").meta["rule_threshold"] > 0
    assert cli.main([*args, "--gate-threshold", "0.42"]) == 2              # nothing to write it to
    assert cli.main([*args, "--gate", str(out_gate)]) == 0
    out = capsys.readouterr().out
    assert f"gate {gate.threshold:.2f} coverage (%)" in out and "ungated loops (%)" in out
    assert cli.main([*args, "--gate", str(tmp_path / "none.json")]) == 2
    capsys.readouterr()
    assert cli.main([*args, "--cold", "--project", str(tmp_path)]) == 2
    assert "--cold measures a new project" in capsys.readouterr().err
    # an untrained network alone is never right: nothing to fit, said in one line
    assert cli.main([*args, "--no-memory", "--save-gate", str(tmp_path / "x.json")]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1].endswith("needs both outcomes")


def test_the_default_threshold_is_the_lowest_with_the_target_precision():
    from completer.evaluation.gatefit import best_threshold, precision_threshold

    p = np.repeat(np.arange(0.05, 1.0, 0.1), 100)            # ten groups of 100 suggestions
    y = np.concatenate([np.r_[np.ones(k * 10), np.zeros(100 - k * 10)] for k in range(10)])   # group k: k/10 right
    # shown at t: the groups with p >= t; groups 3..9 (t in (0.25, 0.35]) are right 60% of the time,
    # groups 2..9 55%: the lowest threshold with 60% is 0.26
    t = precision_threshold(p, y, 0.6)
    assert t == 0.26 and y[p >= t].mean() >= 0.6 > y[p >= t - 0.1].mean()
    assert precision_threshold(p, y, 0.99) is None and 0 < best_threshold(p, y) < 1

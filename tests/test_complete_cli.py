"""`completer complete` and `completer sample`, run as a user runs them."""
import json
import subprocess


def run(exe, args, stdin=""):
    return subprocess.run(exe + args, input=stdin, capture_output=True, text=True, timeout=120)


def test_complete_json(completer_exe, tiny_checkpoint):
    r = run(completer_exe, ["complete", "--model", str(tiny_checkpoint), "--json", "--mode", "line",
                            "--decoder", "beam", "--beam", "3", "--n", "2"], "def f(x):\n    return ")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert 1 <= len(out["completions"]) <= 2 and out["elapsed_ms"] > 0
    assert all(set(c) == {"text", "logprob"} and c["logprob"] <= 0 for c in out["completions"])


def test_complete_plain_is_reproducible_with_a_seed(completer_exe, tiny_checkpoint):
    args = ["complete", "--model", str(tiny_checkpoint), "--decoder", "top-k", "--seed", "3"]
    a, b = run(completer_exe, args, "import "), run(completer_exe, args, "import ")
    assert a.returncode == 0 and a.stdout == b.stdout and a.stdout.strip()


def test_sample(completer_exe, tiny_checkpoint):
    r = run(completer_exe, ["sample", "--model", str(tiny_checkpoint), "--prompt", "import ",
                            "--chars", "30", "--seed", "1"])
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("import ") and len(r.stdout) == len("import ") + 30 + 1


def test_bad_input_is_one_line_and_exit_2(completer_exe, tiny_checkpoint, tmp_path):
    model = ["--model", str(tiny_checkpoint)]
    for args in (["complete", *model, "--temperature", "-1"],
                 ["complete", *model, "--decoder", "nope"],
                 ["complete", *model, "--mode", "paragraph"],
                 ["complete", "--model", str(tmp_path / "missing.safetensors")],
                 ["sample", *model, "--chars", "0"]):
        r = run(completer_exe, args, "x")
        assert r.returncode == 2, (args, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_the_engine_imports_only_what_serving_needs(tiny_checkpoint):
    import sys

    code = ("import sys; from completer.engine import Engine, Request; "
            f"Engine.from_checkpoint({str(tiny_checkpoint)!r}).complete_text('x = ', Request()); "
            "print(sorted(m for m in ('completer_trainers', 'prompt_toolkit', 'pygments', 'torch') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"

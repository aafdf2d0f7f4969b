"""`completer bench`: the training-throughput measurement, its optimizer step, and its CLI."""
import json
import subprocess
import sys

import numpy as np
import pytest

from completer.evaluation import throughput
from completer.model.network import CharModel, ModelConfig


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_forwards_in_flight_keep_their_own_buffers(cell):
    """Dynamic evaluation runs several forwards, then their backwards: same shapes, no mix-up."""
    model = CharModel(ModelConfig(cell=cell, vocab_size=7, embed=4, hidden=5), seed=0)
    rng = np.random.default_rng(0)
    windows = [(rng.integers(0, 7, (3, 2)), rng.integers(0, 7, (3, 2))) for _ in range(2)]
    alone = [model.loss_and_grads(x, y, model.zero_state(2))[1] for x, y in windows]
    caches = [model.forward(x, model.zero_state(2)) for x, _ in windows]
    for (logits, _, cache), (_, y), want in zip(caches, windows, alone):
        grads, _ = model.backward(cache, model.softmax_xent(logits, y)[1])
        for k in want:
            np.testing.assert_array_equal(grads[k], want[k])
    with pytest.raises(RuntimeError, match="already used"):
        model.backward(caches[0][2], caches[0][0])


def test_repeated_windows_give_identical_gradients():
    """Reused buffers leak nothing from one window into the next."""
    model = CharModel(ModelConfig(cell="gru", vocab_size=9, embed=4, hidden=6, layers=2), seed=1)
    rng = np.random.default_rng(0)
    ids, targets = rng.integers(0, 9, (5, 3)), rng.integers(0, 9, (5, 3))
    first = model.loss_and_grads(ids, targets, model.zero_state(3))[1]
    model.loss_and_grads(rng.integers(0, 9, (5, 3)), targets, model.zero_state(3))
    again = model.loss_and_grads(ids, targets, model.zero_state(3))[1]
    for k in first:
        np.testing.assert_array_equal(first[k], again[k])


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "completer", "bench", *args],
                          capture_output=True, text=True, timeout=120)


def test_bench_json_reports_every_config():
    out = run_cli("--json", "--configs", "rnn-8x1", "lstm-8x1", "--steps", "2", "--warmup", "0", "--no-latency")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    rates = result["train_chars_per_s"]
    assert set(rates) == {"rnn-8x1", "lstm-8x1"}
    assert all(isinstance(r, int) and r > 0 for r in rates.values())
    assert (result["batch"], result["window"], result["embed"]) == (32, 128, 64)


def test_bench_latency_replays_files_through_the_engine_and_the_server(tiny_checkpoint, tmp_path):
    code = tmp_path / "typed.py"
    code.write_text("import os\n\ndef f(x):\n    return x + 1\n" * 8)
    out = run_cli("--json", "--no-train", "--model", str(tiny_checkpoint), "--latency-files", str(code))
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert "train_chars_per_s" not in result
    for key in ("keystroke_ms_p50", "keystroke_ms_p99", "line_ms_p50", "line_ms_p99", "startup_ms",
                "serve_ms_p50", "serve_ms_p99"):
        assert 0 < result[key] < 5000, key
    assert result["keystroke_ms_p50"] <= result["keystroke_ms_p99"]
    assert 0 <= result["serve_cut"] <= 1     # the share of answers the typing budget cut short


def test_phases_cover_the_step():
    ph = throughput.phases("gru-8x1", steps=2, warmup=0)
    assert {"cell_forward", "cell_backward", "softmax_xent", "head_and_input", "optimizer",
            "recurrent_products", "weight_grad_product"} <= set(ph)
    assert ph["total"] > 0


@pytest.mark.parametrize("config", ["lstm-512", "nosuchcell-8x1", "lstm-0x1", "rnn-8x0"])
def test_bad_config_is_one_line_and_exit_2(config):
    out = run_cli("--configs", "rnn-8x1", config, "--steps", "1")  # refused before measuring
    assert out.returncode == 2
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_bench_mpi_measures_the_data_parallel_step_beside_the_single_process():
    out = run_cli("--json", "--mpi", "2", "--configs", "rnn-8x1", "--steps", "2", "--warmup", "0", "--no-latency")
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(result["train_chars_per_s"]) == set(result["mpi_train_chars_per_s"]) == {"rnn-8x1"}
    assert result["mpi_ranks"] == 2 and result["mpi_blas_threads"] == 1   # 2 cores / 2 ranks on the node
    assert result["mpi_train_chars_per_s"]["rnn-8x1"] > 0 and result["mpi_speedup"]["rnn-8x1"] > 0

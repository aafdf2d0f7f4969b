"""The keystroke-latency bench runs over real pipes and reports sane percentiles."""
from completer.evaluation.serving import PipeClient, document, measure


def test_measure_reports_latency_percentiles(tiny_checkpoint):
    result = measure(tiny_checkpoint, keystrokes=30, warmup=5, lines=300)
    assert result["keystrokes"] == 30 and result["lines"] == 300
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"] < 5000


def test_document_has_the_requested_lines():
    assert document(2000).count("\n") == 2000


def test_pipe_client_reports_a_dead_server(tmp_path):
    client = PipeClient(["python3", "-c", "pass"])
    try:
        client.request("initialize")
    except (RuntimeError, OSError) as exc:
        assert "no answer" in str(exc) or isinstance(exc, OSError)
    else:
        raise AssertionError("a server that exits without answering must be reported")
    client.proc.wait()


def test_measure_under_load_runs_busy_processes_beside_it(tiny_checkpoint):
    result = measure(tiny_checkpoint, keystrokes=20, warmup=5, lines=300, load=1)
    assert result["load"] == 1 and result["keystrokes"] == 20 and result["loadavg"] >= 0


def test_measure_counts_the_answers_the_budget_cut(tiny_checkpoint):
    free = {"mode": "free", "maxChars": 30}   # no line end to stop at before the budget does
    roomy = measure(tiny_checkpoint, keystrokes=20, warmup=5, lines=300, settings={**free, "budgetMs": 60_000})
    tight = measure(tiny_checkpoint, keystrokes=20, warmup=5, lines=300, settings={**free, "budgetMs": 1e-6})
    assert roomy["cut"] == 0
    assert tight["cut"] >= 0.8     # out of time at once: each answer is its first token

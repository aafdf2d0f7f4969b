"""The completion engine: documents in, continuations out. Every frontend shares it.

    from completer.engine import Engine, Request
    engine = Engine.from_checkpoint(path=None)              # memory=True mixes in the project memory
    engine.open(uri, text); engine.edit(uri, start, end, new_text)
    engine.complete(uri, offset, Request(mode="line")) -> [Completion(text, logprob, char_logprobs)]
    engine.complete_text(prefix, Request(...), suffix="")  # no document needed

One file per piece:
    requests.py    Request, Completion, CancelToken: what is asked and what comes back
    net.py         Net: the serving view of the network (batch-1 steps, the window read)
    search.py      Hyp, Search: what a decoder drives; where network and memory are mixed
    documents.py   DocCache: a document's text and its cached model states
    stops.py       when a mode stops; brackets, closers after the cursor, trailing whitespace
    adaptation.py  dynamic evaluation: Adapter (one SGD step) and DocAdapt (per document)
    service.py     Engine: documents, states, decoding, memory feeding, the learning thread
"""
from completer.engine.net import Net
from completer.engine.requests import MAX_CHARS, TYPING_BUDGET_MS, CancelToken, Cancelled, Completion, Request
from completer.engine.search import Hyp, Search
from completer.engine.service import DEFAULT_CONTEXT, Engine

__all__ = ["Engine", "Request", "Completion", "CancelToken", "Cancelled", "Net", "Search", "Hyp",
           "DEFAULT_CONTEXT", "MAX_CHARS"]

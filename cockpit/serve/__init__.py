"""``cockpit serve``: the completion process behind llama.cpp- and OpenAI-compatible HTTP APIs,
and a page of our own that shows each token's conviction. Torch-free: the model lives in the
engine's completion process (``python -m engine complete``), which this talks to over its pipe."""

"""``cockpit complete RUN``: type a prompt, end it with ``###`` (text) or ``@@@`` (conviction).

Conviction rows are ``tok     | 0.1234``: the token left-justified in 8 columns (longer ones are
not cut), every whitespace character in it shown as a dark-grey dot. Colours are off when
stdout is not a terminal or NO_COLOR is set.
"""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import TextIO

from cockpit.args import fail, finite_float, non_negative_float, non_negative_int, positive_float, positive_int, seed
from cockpit.completion import GREY, RESET, CompletionClient, CompletionError, conviction_row, token_label, use_color

TEXT_END, CONVICTION_END = "###", "@@@"
NO_CONVICTION = "conviction is not available for this run: it was trained without [conviction] enabled"


def register(sub) -> None:
    c = sub.add_parser("complete", help="complete prompts with a run's model: ### text, @@@ conviction per token")
    c.add_argument("run", help="run id, unique id prefix, run directory, or an exported .pt file")
    c.add_argument("--step", type=non_negative_int, default=None, help="checkpoint step (default: the latest)")
    c.add_argument("-t", "--temperature", type=non_negative_float, default=0.8, help="0: greedy")
    c.add_argument("-k", "--top-k", type=non_negative_int, default=50, help="0: no limit")
    c.add_argument("-m", "--max-tokens", type=positive_int, default=256, help="tokens to generate per prompt")
    c.add_argument("--seed", type=seed, default=None, help="same seed, same completion")
    c.add_argument("--prompt", default=None, help="run once on this prompt instead of reading prompts")
    c.add_argument("--mode", choices=("text", "conviction"), default="text", help="with --prompt")
    c.add_argument("--json", action="store_true", help="one JSON object per token: token, id, conviction, prob")
    c.add_argument("--repeat-penalty", type=positive_float, default=1.0,
                   help="llama.cpp's repetition penalty over --repeat-last-n tokens (1: off; mikupad sends 1.1)")
    c.add_argument("--repeat-last-n", type=int, default=64, help="tokens the penalties look back over (0: off, "
                                                                 "-1: the whole context)")
    c.add_argument("--presence-penalty", type=finite_float, default=0.0, help="subtracted once per token seen")
    c.add_argument("--frequency-penalty", type=finite_float, default=0.0, help="subtracted per time a token was seen")
    c.add_argument("--ignore-eos", action="store_true", help="never stop at the separator: generate --max-tokens")
    c.add_argument("--grammar", type=Path, default=None, metavar="FILE",
                   help="a GBNF grammar (llama.cpp's format) the text must follow")
    c.set_defaults(func=main)


def sampling_of(a) -> dict:
    """The sampler settings beyond temperature and top-k, as the engine's request names them."""
    if a.repeat_last_n < -1:
        raise CompletionError(f"--repeat-last-n {a.repeat_last_n}: must be -1 (the whole context), 0 (off) or more")
    out = {"repeat_penalty": a.repeat_penalty, "repeat_last_n": a.repeat_last_n,
           "presence_penalty": a.presence_penalty, "frequency_penalty": a.frequency_penalty,
           "ignore_eos": a.ignore_eos}
    if a.grammar is not None:
        try:
            out["grammar"] = a.grammar.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise CompletionError(f"--grammar {a.grammar}: cannot be read ({e.strerror or e}); give a GBNF "
                                  f"grammar file") from None
    return out


class Session:
    def __init__(self, client: CompletionClient, args, out: TextIO = sys.stdout):
        self.client, self.args, self.out = client, args, out
        self.color = use_color(out)
        self.sampling = sampling_of(args)

    def run(self, prompt: str, mode: str) -> bool:
        """Generate once; False when the mode is not available for this run."""
        a = self.args
        if mode == "conviction" and not self.client.info.get("conviction"):
            print(f"{NO_CONVICTION} (in this session: end the prompt with {TEXT_END})", file=sys.stderr, flush=True)
            return False
        if mode == "text" and not a.json:
            self.out.write(f"{GREY}{prompt}{RESET}" if self.color else prompt)
            self.out.flush()
        stream = self.client.generate(prompt, mode, a.max_tokens, a.temperature, a.top_k, a.seed,
                                      **self.sampling)
        try:
            for msg in stream:
                if msg["type"] == "done":
                    break
                self._show(msg, mode)
        except KeyboardInterrupt:  # stop this generation, keep the session
            self.client.cancel()
            for msg in stream:
                if msg["type"] == "done":
                    break
        if mode == "text" and not a.json:
            self.out.write("\n")
        self.out.flush()
        return True

    def _show(self, msg: dict, mode: str) -> None:
        if self.args.json:
            self.out.write(json.dumps({"token": msg["token"], "id": msg["token_id"],
                                       "conviction": msg["conviction"], "prob": msg["prob"]}) + "\n")
        elif mode == "conviction":
            self.out.write(conviction_row(token_label(msg), msg["conviction"], self.color) + "\n")
        else:
            self.out.write(msg["token"])
        self.out.flush()


def read_prompt(stream: TextIO) -> tuple[str, str] | None:
    """Lines until one that is exactly ### or @@@; None at end of input (Ctrl-D). A prompt cut
    short by the end of input (``echo "Once upon" | cockpit complete RUN``) is completed as text,
    not dropped without a word."""
    lines: list[str] = []
    while True:
        line = stream.readline()
        if not line:
            return ("\n".join(lines), "text") if any(lines) else None
        stripped = line.rstrip("\r\n")
        if stripped in (TEXT_END, CONVICTION_END):
            return "\n".join(lines), "text" if stripped == TEXT_END else "conviction"
        lines.append(stripped)


def main(args) -> int:
    from cockpit.runs import find_run, runs_root
    from runspec.config.schema import ConfigError

    exported = Path(args.run)
    if exported.is_file():  # a checkpoint file (cockpit export): no run directory around it
        return _session(args, exported, exported.stem)
    rd = find_run(args.run, runs_root(args.runs_dir))
    if args.prompt is not None and args.mode == "conviction":  # refused before the model is loaded
        try:
            has_head = rd.read_config().conviction.enabled
        except ConfigError:
            has_head = True  # let the completion process say what is wrong with the run
        if not has_head:
            return fail(f"{rd.id}: {NO_CONVICTION}; use --mode text, or train with [conviction] enabled = true")
    return _session(args, rd.path, rd.id)


def _session(args, target: Path, label: str) -> int:
    try:
        sampling_of(args)  # a bad flag or grammar file is refused before the model is loaded
        client = CompletionClient(target, args.step)
    except CompletionError as e:
        return fail(str(e))
    session = Session(client, args)
    try:
        if args.prompt is not None:
            return 0 if session.run(args.prompt, args.mode) else 2
        if sys.stdin.isatty():
            # Ctrl-C stops a generation even when this was started with SIGINT ignored (a
            # background job of a non-interactive shell passes that on): a person is typing here
            signal.signal(signal.SIGINT, signal.default_int_handler)
            print(f"{label} at step {client.info['step']}: type a prompt, end it with a line {TEXT_END} "
                  f"(text) or {CONVICTION_END} (conviction); Ctrl-D quits", file=sys.stderr)
        while True:
            try:
                got = read_prompt(sys.stdin)
            except KeyboardInterrupt:  # Ctrl-C at the prompt leaves
                return 0
            if got is None:
                return 0
            session.run(*got)
    except CompletionError as e:
        return fail(str(e), 1)
    finally:
        client.close()

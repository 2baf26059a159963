"""``cockpit serve`` as a child process, for the TUI: start it, learn its URL from its first
line, stop it with SIGTERM (it ends running generations and exits 0)."""

from __future__ import annotations

import re
import subprocess
import sys
import threading
from pathlib import Path

URL_LINE = re.compile(r"^serving (\S+) step (\d+) .* at (http://\S+)")
DEFAULT_PORT = 8080


class ServeProcess:
    def __init__(self, runs_dir: Path, run: str, step: int | None, port: int = DEFAULT_PORT):
        self.runs_dir, self.run, self.step = runs_dir, run, step
        self.url: str | None = None
        self.error: str | None = None
        self.ready = threading.Event()  # set when the URL is known or the process has failed
        self.proc = self._spawn(port)
        threading.Thread(target=self._watch, args=(port,), daemon=True).start()

    def _spawn(self, port: int) -> subprocess.Popen:
        cmd = [sys.executable, "-m", "cockpit", "--runs-dir", str(self.runs_dir), "serve", self.run, "--port", str(port)]
        if self.step is not None:
            cmd += ["--step", str(self.step)]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="utf-8",
                                start_new_session=True)

    def _watch(self, port: int) -> None:
        for line in self.proc.stdout:
            m = URL_LINE.match(line)
            if m:
                self.url = m.group(3)
                self.ready.set()
                break
        else:
            err = (self.proc.stderr.read() or "").strip().splitlines()
            why = err[-1].removeprefix("error: ") if err else "cockpit serve exited"
            if port == DEFAULT_PORT and "in use" in why:  # 8080 taken: any free port will do
                self.proc = self._spawn(0)
                return self._watch(0)
            self.error = why
            self.ready.set()
            return
        for _ in self.proc.stdout:  # keep the pipe drained
            pass

    @property
    def running(self) -> bool:
        return self.proc.poll() is None

    def stop(self, timeout: float = 10) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

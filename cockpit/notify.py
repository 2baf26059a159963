"""Telling the user when something they are not watching happens: a run failed, a run
completed, the queue drained. The ``[notify]`` table of the user's cockpit settings file
(``$COCKPIT_CONFIG``, else ``$XDG_CONFIG_HOME/cockpit/config.toml``, else
``~/.config/cockpit/config.toml``)::

    [notify]
    command = "curl -s -d \"$COCKPIT_MESSAGE\" ntfy.sh/my-runs"   # a shell command, run for each event
    desktop = true                                              # notify-send, where it is installed
    on = ["failed", "completed", "drained"]                     # which events (default: all three)

The command gets the event in its environment: COCKPIT_EVENT (failed, completed, drained),
COCKPIT_RUN (the run id; empty for drained), COCKPIT_STATUS, COCKPIT_REASON, COCKPIT_RUN_DIR and
COCKPIT_MESSAGE (one line saying all of it). It runs in the background: a slow or failing hook
never holds up the worker, and a failure to start it is one line in the worker's log.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from runspec.config.schema import tomllib  # (tomli before Python 3.11)

EVENTS = ("failed", "completed", "drained")


class NotifyError(ValueError):
    """The settings file's [notify] table is wrong (one line naming the file and key)."""


@dataclass
class Notify:
    command: str = ""
    desktop: bool = False
    on: list[str] = field(default_factory=lambda: list(EVENTS))
    source: str = ""  # the settings file it came from

    @property
    def enabled(self) -> bool:
        return bool(self.command or self.desktop)


def settings_file() -> Path:
    if os.environ.get("COCKPIT_CONFIG"):
        return Path(os.environ["COCKPIT_CONFIG"]).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "cockpit" / "config.toml"


def load(path: Path | None = None) -> Notify:
    """The [notify] settings; none (nothing to do) when the file or the table is absent."""
    path = path or settings_file()
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return Notify()
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise NotifyError(f"{path}: cannot be read as TOML ({str(e).splitlines()[0]})") from None
    table = data.get("notify", {})
    if not isinstance(table, dict):
        raise NotifyError(f"{path}: [notify] must be a table")
    unknown = set(table) - {"command", "desktop", "on"}
    if unknown:
        raise NotifyError(f"{path}: [notify] unknown key(s) {sorted(unknown)}; use command, desktop, on")
    out = Notify(source=str(path))
    if "command" in table:
        if not isinstance(table["command"], str):
            raise NotifyError(f"{path}: [notify] command must be a string (a shell command)")
        out.command = table["command"]
    if "desktop" in table:
        if not isinstance(table["desktop"], bool):
            raise NotifyError(f"{path}: [notify] desktop must be true or false")
        out.desktop = table["desktop"]
    if "on" in table:
        on = table["on"]
        if not isinstance(on, list) or not all(isinstance(x, str) and x in EVENTS for x in on):
            raise NotifyError(f"{path}: [notify] on = {on!r}: a list of {', '.join(EVENTS)}")
        out.on = list(on)
    return out


def message(event: str, run: str = "", status: str = "", reason: str = "") -> str:
    if event == "drained":
        return "cockpit: the queue is drained" + (f" ({reason})" if reason else "")
    return f"cockpit: {run} {status}" + (f": {reason}" if reason else "")


def fire(settings: Notify, event: str, run: str = "", run_dir: str = "", status: str = "", reason: str = "",
         log=lambda line: None) -> None:
    """Run the hook and the desktop notification for ``event``, in the background."""
    if event not in settings.on or not settings.enabled:
        return
    text = message(event, run, status, reason)
    if settings.command:
        env = {**os.environ, "COCKPIT_EVENT": event, "COCKPIT_RUN": run, "COCKPIT_RUN_DIR": run_dir,
               "COCKPIT_STATUS": status, "COCKPIT_REASON": reason, "COCKPIT_MESSAGE": text}
        try:
            subprocess.Popen(settings.command, shell=True, env=env, stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        except OSError as e:
            log(f"notify: could not run [notify] command from {settings.source}: {e}")
    if settings.desktop:
        sender = shutil.which("notify-send")
        if sender is None:
            log("notify: desktop = true, but notify-send is not installed here (libnotify-bin)")
            settings.desktop = False  # said once
            return
        urgency = "critical" if event == "failed" else "normal"
        try:
            subprocess.Popen([sender, "-u", urgency, "cockpit", text], stdin=subprocess.DEVNULL,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except OSError as e:
            log(f"notify: notify-send failed: {e}")

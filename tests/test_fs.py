"""The one atomic write and the one lock helper."""

from __future__ import annotations

import fcntl
import os

import pytest

from runspec import fs


def test_atomic_write_replaces_whole_files_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "state.json"
    target.write_text("old")
    fs.atomic_write(target, "new")
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError):
        with fs.atomic_file(target) as f:
            f.write(b"half")
            raise RuntimeError("killed mid-write")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


def test_a_held_lock_times_out_naming_its_holder(tmp_path):
    path = tmp_path / ".lock"
    holder = fs.acquire(path)  # this process holds it (its pid and command are in the file)
    try:
        with pytest.raises(fs.LockHeld, match=rf"held by pid {os.getpid()} \(.+\) \(for 0.05 s\); if that "
                                              rf"process is hung, end it"):
            with fs.locked(path, timeout=0.05):
                pass
    finally:
        holder.release()
    with fs.locked(path, timeout=0.05):  # free again
        pass


def test_a_lock_taken_by_another_open_file_is_waited_for_then_refused(tmp_path):
    path = tmp_path / "queue.lock"
    with open(path, "a") as other:  # flock is per open file: the same process can be its own rival
        fcntl.flock(other, fcntl.LOCK_EX)
        with pytest.raises(fs.LockHeld, match="is held by another process"):
            fs.acquire(path, timeout=0)


def test_a_waiter_gets_the_lock_when_it_is_released(tmp_path):
    import threading

    path = tmp_path / ".lock"
    with open(path, "a") as other:
        fcntl.flock(other, fcntl.LOCK_EX)
        got: list[fs.Lock] = []
        waiter = threading.Thread(target=lambda: got.append(fs.acquire(path, timeout=60)))
        waiter.start()
        assert not got  # still held
        fcntl.flock(other, fcntl.LOCK_UN)
        waiter.join(timeout=60)
    assert got and not waiter.is_alive()
    got[0].release()

"""Pruning the clean-environment cache (worker/envcache.py): the least recently used go, the
recent and the kept stay, and an environment a live process uses is never removed, even by a
pruner racing the process that starts using it. Old environments are real folders with old
modification times; one real environment is built (by ensure_environment)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from verta_jupyter.cli import main
from verta_jupyter.worker import envcache, envproof

DAY = 86400.0


def fake_env(root: Path, key: str, days_ago: float, requirements=("six==1.17.0",)) -> Path:
    """A cached environment folder last used `days_ago` days ago (its vj-env.json's mtime)."""
    env = root / key
    (env / "lib").mkdir(parents=True)
    (env / "lib" / "big.bin").write_bytes(b"x" * 1000)
    info = env / envcache.INFO
    info.write_text(json.dumps({"requirements": list(requirements)}))
    when = time.time() - days_ago * DAY
    os.utime(info, (when, when))
    return env


HOLDER = """
import sys
from pathlib import Path
from verta_jupyter.worker.envcache import acquire

lease = acquire(Path(sys.argv[1]), sys.argv[2])
print("holding", flush=True)
sys.stdin.readline()
lease.release()
"""


def hold(root: Path, key: str) -> subprocess.Popen:
    """Another live process using environment `key` (until its stdin gets a line)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), key], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "holding", proc.stderr.read()
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.write("done\n")
    proc.stdin.flush()
    proc.communicate(timeout=60)


def test_the_least_recently_used_go_the_recent_and_the_kept_stay(tmp_path):
    root = tmp_path / "envs"
    for key, age in (("a", 1), ("b", 40), ("c", 50), ("d", 60), ("e", 70)):
        fake_env(root, key, age)
    removed = envcache.prune_environments(root, keep=2, days=7)
    # kept: "a" (used yesterday) and "b" (second most recent); "c", "d", "e" are old and beyond 2
    assert sorted(e.key for e in removed) == ["c", "d", "e"]
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["a", "b"]
    assert not list(root.glob(".pruning-*"))  # removed completely, no half left


def test_an_environment_a_live_process_uses_is_never_pruned(tmp_path):
    root = tmp_path / "envs"
    fake_env(root, "old", 90)
    fake_env(root, "older", 100)
    holder = hold(root, "old")
    try:
        removed = envcache.prune_environments(root, keep=0, days=0)
        assert [e.key for e in removed] == ["older"]
        assert (root / "old" / envcache.INFO).exists()
        assert [e.in_use for e in envcache.list_environments(root)] == [True]
    finally:
        release(holder)
    # released: now it goes
    assert [e.key for e in envcache.prune_environments(root, keep=0, days=0)] == ["old"]


def test_a_dead_processs_use_marker_keeps_nothing_and_is_swept(tmp_path):
    root = tmp_path / "envs"
    fake_env(root, "old", 90)
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(root), "old"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "holding"
    holder.kill()  # killed while using it: its marker stays behind
    holder.wait()
    assert len(list((root / ".use").iterdir())) == 1
    assert [e.key for e in envcache.prune_environments(root, keep=0, days=0)] == ["old"]
    assert list((root / ".use").iterdir()) == []


def test_a_user_arriving_while_a_pruner_decides_waits_and_the_pruner_backs_off(tmp_path):
    """The two orders of the marker exchange, made to happen by hand: a pruner that finds a
    use marker backs off; a user that finds a live prune marker waits for it."""
    root = tmp_path / "envs"
    fake_env(root, "k", 90)
    with envcache.acquire(root, "k"):
        assert envcache._remove_unless_used(root, "k") is False  # the user was first
        assert (root / "k").is_dir() and not (root / ".use" / "k.prune").exists()
    prune_marker = root / ".use" / "k.prune"
    prune_marker.write_text(str(os.getpid()))  # a live pruner (this process) is deciding
    started = time.monotonic()
    lease = envcache.acquire(root, "k", wait=0.3)
    assert time.monotonic() - started >= 0.3  # it waited for the pruner...
    lease.release()
    prune_marker.unlink()
    started = time.monotonic()
    with envcache.acquire(root, "k", wait=30):  # ...and without one it does not wait at all
        assert time.monotonic() - started < 5


RACER = """
import sys
from pathlib import Path
from verta_jupyter.worker.envcache import acquire, prune_environments

root, role, rounds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
for i in range(rounds):
    key = f"e{i}"
    print("ready", flush=True)
    sys.stdin.readline()  # one barrier per round: the pruner and the users start together
    lost = 0
    if role == "user":
        with acquire(root, key):  # in use: if it is whole now, it must stay whole while held
            whole = (root / key / "vj-env.json").exists()
            for _ in range(200):
                if whole and not (root / key / "lib" / "big.bin").exists():
                    lost = 1
                    break
    else:
        others = tuple(f"e{j}" for j in range(rounds) if j != i)
        prune_environments(root, keep=0, days=0, spare=others)  # this round's key only
    print("lost", lost, flush=True)
"""


def test_a_pruner_racing_users_never_removes_one_while_it_is_used(tmp_path):
    root = tmp_path / "envs"
    rounds = 40
    for i in range(rounds):
        fake_env(root, f"e{i}", 90 + i)
    script = tmp_path / "racer.py"
    script.write_text(RACER)
    procs = [subprocess.Popen([sys.executable, str(script), str(root), role, str(rounds)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
             for role in ("user", "user", "pruner")]
    results = []
    try:
        for _ in range(rounds):
            for proc in procs:
                assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            for proc in procs:
                proc.stdin.write("go\n")
                proc.stdin.flush()
            results.append([proc.stdout.readline().strip() for proc in procs])
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # never half an environment while a user held it
    assert all(line == "lost 0" for round_ in results for line in round_), results
    # those the pruner left because they were in use go once nobody uses them
    envcache.prune_environments(root, keep=0, days=0)
    assert not [p for p in root.iterdir() if not p.name.startswith(".")]


def test_building_a_new_environment_prunes_the_old_and_touches_on_reuse(tmp_path):
    root = tmp_path / "envs"
    for i in range(envcache.DEFAULT_KEEP + 2):  # more than are kept, all older than DAYS
        fake_env(root, f"old{i}", envcache.DEFAULT_DAYS + 10 + i)
    fake_env(root, "recent", 1)
    env = envproof.ensure_environment([], cache_dir=root)  # the one real build
    try:
        assert env.reused is False and Path(env.python).exists()
        names = sorted(p.name for p in root.iterdir() if not p.name.startswith("."))
        # the new one, "recent", and the most recent old ones up to DEFAULT_KEEP in all
        kept_old = [f"old{i}" for i in range(envcache.DEFAULT_KEEP - 2)]
        assert names == sorted([env.key, "recent", *kept_old])
    finally:
        env.release()
    info = env.path / envcache.INFO
    os.utime(info, (time.time() - 30 * DAY,) * 2)
    again = envproof.ensure_environment([], cache_dir=root)
    again.release()
    assert again.reused is True and time.time() - info.stat().st_mtime < 60  # touched
    assert not list((root / ".use").iterdir())  # released: no marker left


def test_cli_lists_and_prunes_the_cache(tmp_path, capsys):
    root = tmp_path / "envs"
    fake_env(root, "fresh", 0.5, requirements=("numpy==2.1.0",))
    fake_env(root, "stale", 60)
    assert main(["envs", "list", "--cache", str(root)]) == 0
    out = capsys.readouterr().out
    assert f"2 environment(s) in {root}" in out and out.index("fresh") < out.index("stale")
    assert "numpy==2.1.0" in out
    assert main(["envs", "prune", "--cache", str(root)]) == 0  # defaults: keep 5, 14 days
    assert "removed 0 environment(s)" in capsys.readouterr().out
    assert main(["envs", "prune", "--keep", "1", "--days", "7", "--cache", str(root)]) == 0
    assert capsys.readouterr().out.strip() == "removed 1 environment(s): stale"
    assert main(["envs", "prune", "--all", "--cache", str(root)]) == 0
    assert "fresh" in capsys.readouterr().out and not (root / "fresh").exists()


def test_cli_envs_on_a_missing_cache_says_it_is_empty(tmp_path, capsys):
    assert main(["envs", "list", "--cache", str(tmp_path / "none")]) == 0
    assert "0 environment(s)" in capsys.readouterr().out
    assert not (tmp_path / "none").exists()  # looking creates nothing


def test_cli_default_cache_is_the_proofs_cache(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VERTA_JUPYTER_ENV_CACHE", str(tmp_path / "configured"))
    fake_env(tmp_path / "configured", "one", 1)
    assert main(["envs", "list"]) == 0
    assert "1 environment(s)" in capsys.readouterr().out

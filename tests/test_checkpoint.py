"""Checkpoint format and local store: safe to read, atomic to write, one file per symbol, no rewrite when unchanged."""
from __future__ import annotations

import inspect
import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from streamsig.book import events as E
from streamsig.live import checkpoint as C
from streamsig.live.checkpoint import (CheckpointError, LocalStore, Versions, decode_checkpoint,
                                       encode_checkpoint, split_record)

ROOT = Path(__file__).resolve().parents[1]


def sample_state() -> dict:
    ev = E.empty(3)
    ev["seq"] = [4, 5, 6]
    ev["price"] = [100, 101, 99]
    return {"seq": 6, "state": bytes(range(256)) * 10, "events": ev, "x": np.arange(5.0),
            "nested": {"nan": float("nan"), "inf": float("-inf"), "list": [1, 2.5, None, "s"], "flag": True}}


def test_round_trip_keeps_bytes_arrays_and_scalars() -> None:
    st = sample_state()
    blob = encode_checkpoint("worker", "A/B", 7, st)
    ck = decode_checkpoint(blob, "A/B", "worker")
    assert (ck.kind, ck.symbol, ck.version) == ("worker", "A/B", 7)
    assert ck.state["state"] == st["state"]
    assert ck.state["events"].dtype == st["events"].dtype
    assert ck.state["events"].tobytes() == st["events"].tobytes()
    assert ck.state["x"].tolist() == [0.0, 1.0, 2.0, 3.0, 4.0]
    assert np.isnan(ck.state["nested"]["nan"]) and ck.state["nested"]["inf"] == float("-inf")
    assert ck.state["nested"]["list"] == [1, 2.5, None, "s"] and ck.state["nested"]["flag"] is True


def test_every_truncation_and_bit_flip_is_reported() -> None:
    blob = encode_checkpoint("worker", "S", 1, sample_state())
    for n in (0, 1, 11, len(blob) // 2, len(blob) - 1):
        with pytest.raises(CheckpointError):
            decode_checkpoint(blob[:n])
    bad = bytearray(blob)
    bad[len(bad) // 3] ^= 0x01
    with pytest.raises(CheckpointError, match="checksum"):
        decode_checkpoint(bytes(bad))
    with pytest.raises(CheckpointError, match="symbol"):
        decode_checkpoint(blob, "T")
    with pytest.raises(CheckpointError, match="kind|trader"):
        decode_checkpoint(blob, "S", "trader")


class _Boom:
    def __reduce__(self):  # noqa: ANN204 - the classic pickle exploit
        return (os.system, (f"touch {_Boom.marker}",))


def test_a_crafted_checkpoint_cannot_run_code(tmp_path: Path) -> None:
    """A pickle exploit in the checkpoint file (or its arrays) is refused, nothing runs."""
    store = LocalStore(tmp_path, "worker")
    marker = tmp_path / "pwned"
    _Boom.marker = marker
    store.path("S").write_bytes(pickle.dumps({"state": _Boom()}))
    with pytest.raises(CheckpointError):
        store.load("S")
    # a well-formed file whose JSON asks for an object dtype and carries a pickle as array bytes
    evil = pickle.dumps(_Boom())
    head = ('{"kind":"worker","symbol":"S","version":1,"state":{"$array":"a0"},"arrays":[{"name":"a0",'
            f'"dtype":"|O","shape":[1],"offset":0,"nbytes":{len(evil)}}}]}}').encode()
    body = C._HEAD.pack(C.MAGIC, C.FORMAT_VERSION, 0, len(head)) + head + evil
    import hashlib

    store.path("S").write_bytes(body + hashlib.sha256(body).digest())
    with pytest.raises(CheckpointError, match="object"):
        store.load("S")
    assert not marker.exists()
    src = inspect.getsource(sys.modules["streamsig.live.worker"]) if "streamsig.live.worker" in sys.modules \
        else (ROOT / "streamsig/live/worker.py").read_text()
    assert "import pickle" not in src and "pickle." not in src
    assert "pickle" not in (ROOT / "streamsig/live/checkpoint.py").read_text().replace("no pickle", "")


def test_symbols_that_used_to_share_a_file_get_their_own(tmp_path: Path) -> None:
    store = LocalStore(tmp_path, "worker")
    syms = ["A/B", "A_B", "a\0b", "A.B", "ÄB"]
    for i, s in enumerate(syms):
        store.save(s, encode_checkpoint("worker", s, i + 1, {"seq": i}))
    assert len({store.path(s) for s in syms}) == len(syms)
    for i, s in enumerate(syms):
        ck = store.load(s)
        assert ck is not None and ck.symbol == s and ck.state["seq"] == i


def test_unchanged_state_is_not_written_again() -> None:
    v = Versions()
    st = sample_state()
    first = v.next("S", st)
    assert first is not None and first[0] == 1
    v.written("S", *first)
    assert v.next("S", sample_state()) is None  # same content: no write
    st2 = sample_state()
    st2["seq"] = 7
    nxt = v.next("S", st2)
    assert nxt is not None and nxt[0] == 2
    assert v.next("S", st2) is not None  # not recorded as written yet: still due


def test_default_location_is_the_users_data_directory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert C.default_state_dir("worker") == tmp_path / "xdg" / "streamsig" / "worker"
    monkeypatch.delenv("XDG_DATA_HOME")
    assert C.default_state_dir("trader") == Path.home() / ".local" / "share" / "streamsig" / "trader"
    from typer.testing import CliRunner

    from streamsig.cli.main import app

    out = CliRunner().invoke(app, ["worker", "--help"], env={"COLUMNS": "200"}).output
    assert ".streamsig/worker" not in out and "XDG_DATA_HOME" in out


def test_a_kill_during_a_write_leaves_the_previous_checkpoint(tmp_path: Path) -> None:
    """SIGKILL half-way through the second write: the first checkpoint is still whole and readable."""
    code = (
        "import sys\n"
        "from streamsig.live.checkpoint import LocalStore, encode_checkpoint\n"
        "s = LocalStore(sys.argv[1], 'worker')\n"
        "s.save('S', encode_checkpoint('worker', 'S', 1, {'seq': 1, 'b': bytes(200000)}))\n"
        "s.save('S', encode_checkpoint('worker', 'S', 2, {'seq': 2, 'b': bytes(200000)}))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT), STREAMSIG_CRASH_AT="file-write:2")
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=env, timeout=60)
    assert r.returncode == -9  # killed inside the second write
    ck = LocalStore(tmp_path, "worker").load("S")
    assert ck is not None and ck.version == 1 and ck.state["seq"] == 1
    assert not list(tmp_path.glob(".*.tmp"))  # the half-written temp file is cleaned up on open


def test_opening_a_folder_keeps_the_temp_file_a_live_process_is_writing(tmp_path: Path) -> None:
    """Only a dead writer's temp file is stale: removing a live one made that writer's rename fail."""
    writer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        live = C._temp_path(tmp_path / C.symbol_file("S"), writer.pid)  # noqa: SLF001 - the name a writer uses
        live.write_bytes(b"half")
        LocalStore(tmp_path, "worker")
        assert live.exists()
    finally:
        writer.kill()
        writer.wait()
    LocalStore(tmp_path, "worker")
    assert not live.exists()


def test_records_stay_under_the_request_limit() -> None:
    blob = os.urandom(2_500_000)
    recs = split_record(blob, 3)
    assert len(recs) == 3 and max(len(r) for r in recs) < 1_000_000
    asm = C._Assembler()
    for r in reversed(recs):
        asm.add(b"S", r)
    assert asm.latest[b"S"] == (3, blob)


def test_resume_from_whichever_checkpoint_is_further_along() -> None:
    """A restarted worker never takes its stale local file over the newer owner's broker record."""
    from streamsig.live.checkpoint import Checkpoint
    from streamsig.live.worker import choose_checkpoint

    mine = Checkpoint("worker", "S", 5, {"seq": 900})
    theirs = Checkpoint("worker", "S", 9, {"seq": 1500})
    assert choose_checkpoint(mine, theirs) == (theirs, "broker")
    assert choose_checkpoint(Checkpoint("worker", "S", 10, {"seq": 1600}), theirs)[1] == "local"
    assert choose_checkpoint(Checkpoint("worker", "S", 9, {"seq": 1500}), theirs)[1] == "broker"  # a tie
    assert choose_checkpoint(None, None) == (None, "none")


def test_a_restored_state_is_not_rewritten_until_it_changes() -> None:
    st = dict(sample_state(), signals_offset=41)
    ck = decode_checkpoint(encode_checkpoint("worker", "S", 3, st))
    v = Versions()
    v.restored("S", ck, ("signals_offset",))
    content = {k: val for k, val in sample_state().items()}
    assert v.next("S", content) is None
    content["seq"] = 7
    assert v.next("S", content)[0] == 4

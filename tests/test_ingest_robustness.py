"""Robustness of real-dataset ingestion (issue 13): layout detection over every row, stores that
follow the audio copy, corrupt and truncated files, the loud warning on a mostly missing copy,
and builds that survive a SIGKILL (no lock kept by orphaned workers, no orphans)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
import fixtures_datasets as fx  # noqa: E402

from workbench.config import DataConfig  # noqa: E402
from workbench.data import (  # noqa: E402
    decode,  # noqa: E402
    gtzan,
    jamendo,
)
from workbench.data.ingest import ingest, read_report  # noqa: E402
from workbench.locks import build_lock  # noqa: E402

SR = 16_000


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    home = tmp_path / "data"
    monkeypatch.setenv("WORKBENCH_DATA", str(home))
    return home


def _ingest(cfg, workers=1):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        store = ingest(cfg, workers=workers, progress=False)
    return store, [str(w.message) for w in caught]


# --------------------------------------------------------------------------- 1. layout over all rows

def test_jamendo_layout_found_when_first_rows_are_missing(tmp_path, capsys):
    """250 listed tracks, only the last 10 present under audio/: the old scan of the first 200
    rows found nothing and put every path at the root."""
    root = tmp_path / "jamendo"
    fx.make_jamendo_partial(root, n_missing=250, n_present=10, audio_dir="audio")
    table = jamendo.read(root, "top50")
    assert table.tracks["path"].str.startswith("audio/").all()
    present = [p for p in table.tracks["path"] if (root / p).is_file()]
    assert len(present) == 10 and present == table.tracks["path"].tolist()[-10:]
    assert "audio layout audio/NN/ID.mp3: 10 of 260 listed files found" in capsys.readouterr().out


def test_jamendo_layout_majority_beats_a_stray_first_file(tmp_path):
    root = tmp_path / "jamendo"
    fx.make_jamendo_partial(root, n_missing=0, n_present=6, audio_dir="audio")
    first = jamendo.read(root, "top50").tracks["path"].iloc[0].removeprefix("audio/")
    (root / first).parent.mkdir(parents=True, exist_ok=True)
    (root / first).write_bytes(b"")  # one stray copy of the first file at the root
    assert jamendo.read(root, "top50").tracks["path"].str.startswith("audio/").all()


def test_gtzan_audio_dir_found_when_first_entries_are_missing(tmp_path, capsys):
    root = tmp_path / "gtzan"
    entries = [f"{g}/{g}.{k:05d}.wav" for g in fx.GENRES for k in range(6)]  # 60 entries
    (root / "train_filtered.txt").parent.mkdir(parents=True)
    (root / "train_filtered.txt").write_text("\n".join(entries[:40]) + "\n")
    (root / "valid_filtered.txt").write_text("\n".join(entries[40:50]) + "\n")
    (root / "test_filtered.txt").write_text("\n".join(entries[50:]) + "\n")
    for e in entries[52:]:  # only the last 8 present, as the original .au
        p = root / "genres_original" / e
        p.parent.mkdir(parents=True, exist_ok=True)
        p.with_suffix(".au").write_bytes(b".snd")
    table = gtzan.read(root)
    assert table.tracks["path"].str.startswith("genres_original/").all()
    assert table.tracks["path"].iloc[-1].endswith(".au") and table.tracks["path"].iloc[0].endswith(".wav")
    assert "GTZAN] audio layout genres_original/<genre>/: 8 of 60" in capsys.readouterr().out


# --------------------------------------------------------------------------- 2. the store follows the copy

def test_finished_store_updated_when_files_appear(tmp_path, data_home, monkeypatch, capsys):
    root = tmp_path / "jamendo"
    fx.make_jamendo(root)
    cfg = DataConfig(dataset="jamendo", root=str(root), variant="top50", max_seconds=5.0)
    first, _ = _ingest(cfg)
    assert len(first) == 7 and read_report(first)["reason"].str.startswith("missing").sum() == 1
    missing = read_report(first)["path"].iloc[0]
    capsys.readouterr()

    again, _ = _ingest(cfg)  # unchanged: reused, with its summary
    out = capsys.readouterr().out
    assert again.root == first.root and "reusing" in out and "7 tracks kept, 1 left out (1 missing)" in out

    fx.write_audio(root / missing, 4.5, seed=7)  # the missing file arrives
    real_load, decoded = decode.load_audio, []
    monkeypatch.setattr(decode, "load_audio", lambda p, *a, **kw: decoded.append(p) or real_load(p, *a, **kw))
    updated, _ = _ingest(cfg)
    out = capsys.readouterr().out
    assert "1 listed file(s) changed" in out and f"{missing}: missing -> " in out
    assert updated.root == first.root and len(updated) == 8 and read_report(updated).empty
    assert [Path(p).relative_to(root).as_posix() for p in decoded] == [missing]  # only what changed
    assert missing in set(updated.tracks["source"])
    assert updated.tracks["track_id"].tolist() == jamendo.read(root, "top50").tracks["track_id"].tolist()
    for i, src in enumerate(first.tracks["source"]):  # copied tracks are the same samples
        j = updated.tracks.index[updated.tracks["source"] == src][0]
        np.testing.assert_array_equal(updated.audio(j), first.audio(i))
    assert not list(data_home.glob("stores/*.replaced"))

    os.unlink(root / updated.tracks["source"].iloc[0])  # a file vanishes
    shrunk, _ = _ingest(cfg)
    assert len(shrunk) == 7 and read_report(shrunk)["reason"].str.startswith("missing").sum() == 1


# --------------------------------------------------------------------------- 3, 8. corrupt and truncated

def test_random_bytes_au_refused_as_corrupt(tmp_path):
    path = tmp_path / "x.au"
    path.write_bytes(np.random.default_rng(0).integers(0, 256, 200_000, dtype=np.uint8).tobytes())
    _, audio, reason, _ = decode._decode((0, str(path), SR, None))
    assert audio is None and reason.startswith("corrupt: no .au header"), reason
    # The same bytes under a name without a known header: refused by libsndfile or as RAW.
    raw = tmp_path / "y.raw"
    raw.write_bytes(path.read_bytes())
    _, audio, reason, _ = decode._decode((0, str(raw), SR, None))
    assert audio is None and reason.startswith("corrupt"), reason


def test_truncated_mp3_is_corrupt_not_too_short(tmp_path):
    good = fx.write_audio(tmp_path / "whole.mp3", 20.0, seed=3)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 10])
    _, audio, reason, _ = decode._decode((0, str(cut), SR, None))
    assert audio is None and reason.startswith("corrupt: truncated, decoded"), reason
    assert "20.00 s its header announces" in reason
    _, audio, reason, _ = decode._decode((0, str(good), SR, 5.0))  # a cap is not a truncation
    assert reason is None and audio.size == 5 * SR


def test_reason_words_are_unified(tmp_path):
    cases = {"missing": tmp_path / "gone.wav", "empty": fx.write_audio(tmp_path / "e.wav", kind="empty"),
             "corrupt": fx.write_audio(tmp_path / "c.mp3", kind="corrupt"),
             "too short": fx.write_audio(tmp_path / "s.wav", 2.0),
             "silent": fx.write_audio(tmp_path / "z.wav", 5.0, kind="silent")}
    for word, path in cases.items():
        reason = decode._decode((0, str(path), SR, None))[2]
        assert reason.startswith(word + ":") and decode.reason_kind(reason) == word, reason
    assert decode.reason_kind("known broken MTAT clip 35644; empty: the file has 0 bytes") == "empty"


def test_decoder_stderr_is_captured(tmp_path, capfd):
    good = fx.write_audio(tmp_path / "whole.mp3", 20.0, seed=3)
    cut = tmp_path / "cut.mp3"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 10])
    capfd.readouterr()
    _, _, reason, noise = decode._decode((0, str(cut), SR, None))
    assert "Xing" not in capfd.readouterr().err  # nothing reached the terminal
    if noise:  # depends on the libmpg123 build; when it speaks, the report keeps it
        assert "decoder said" in reason


# --------------------------------------------------------------------------- 4. loud warning

def test_loud_warning_when_most_files_are_missing(tmp_path, data_home, capsys):
    root = tmp_path / "jamendo"
    fx.make_jamendo_partial(root, n_missing=6, n_present=3, audio_dir="", audio=True)
    store, messages = _ingest(DataConfig(dataset="jamendo", root=str(root), variant="top50", max_seconds=5.0))
    out = capsys.readouterr().out
    assert len(store) == 3
    line = next(line for line in out.splitlines() if "!!! WARNING" in line)
    assert "only 3 of 9 listed tracks kept, 6 left out (missing 6, empty 0, corrupt 0, too short 0, silent 0)" in line
    assert any("only 3 of 9 listed tracks kept" in m for m in messages)


# --------------------------------------------------------------------------- 5. killed builds

_BUILD = textwrap.dedent("""
    import sys, time
    from workbench.config import DataConfig
    from workbench.data import decode
    from workbench.data.ingest import ingest
    real = decode.load_audio
    def slow(*a, **kw):
        time.sleep(0.3)
        return real(*a, **kw)
    decode.load_audio = slow  # forked workers see it
    ingest(DataConfig(dataset="folder", root=sys.argv[1]), workers=2, progress=False)
    print("DONE", flush=True)
""")


def _children(pid: int) -> list[int]:
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    if int(f.read().rsplit(")", 1)[1].split()[1]) == pid:
                        out.append(int(d))
            except OSError:
                pass
    return out


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc and PR_SET_PDEATHSIG")
def test_killed_parallel_build_leaves_no_orphans_and_rerun_finishes(tmp_path, data_home):
    pool = tmp_path / "pool"
    fx.make_folder(pool, n=24, seconds=4.2)
    env = {**os.environ, "WORKBENCH_DATA": str(data_home)}
    proc = subprocess.Popen([sys.executable, "-c", _BUILD, str(pool)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    journal = None
    while time.monotonic() < deadline:  # kill once a few tracks are journaled (mid-way)
        found = list(data_home.glob("stores/*.partial/journal.jsonl"))
        if found and len(found[0].read_text().splitlines()) >= 2:
            journal = found[0]
            break
        time.sleep(0.1)
    assert journal is not None, "the build never started writing"
    workers = _children(proc.pid)
    assert workers, "no worker processes seen"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    end = time.monotonic() + 10
    while time.monotonic() < end and any(_alive(w) for w in workers):
        time.sleep(0.1)
    orphans = [w for w in workers if _alive(w)]
    for w in orphans:  # leave no process behind, even when the test fails
        os.kill(w, signal.SIGKILL)
    assert not orphans, "orphaned workers survive their killed parent"
    t0 = time.monotonic()
    rerun = subprocess.run([sys.executable, "-c", _BUILD, str(pool)], env=env, capture_output=True, text=True,
                           timeout=60)
    assert rerun.returncode == 0 and "DONE" in rerun.stdout, rerun.stdout + rerun.stderr
    assert "resuming" in rerun.stdout and time.monotonic() - t0 < 60


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX record locks")
def test_waiting_builder_names_the_holder(tmp_path, capsys):
    target = tmp_path / "store"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from workbench.locks import build_lock
        with build_lock({str(target)!r}):
            print("held", flush=True)
            time.sleep(1.5)
        """)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    t0 = time.monotonic()
    with build_lock(target, poll=0.1):
        waited = time.monotonic() - t0
    holder.wait()
    assert 0.3 < waited < 10
    assert f"waiting for process {holder.pid}" in capsys.readouterr().out

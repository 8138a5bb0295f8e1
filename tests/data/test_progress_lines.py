"""The jobs' progress display: tqdm on a terminal, a few plain lines (no carriage returns) in a log."""

from __future__ import annotations

import io

from tqdm import tqdm

from fourm_core.data.jobkit import PlainProgress, progress_bar


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_plain_lines_every_tenth_and_at_close() -> None:
    out = io.StringIO()
    with progress_bar(1000, "tokenize", stream=out) as bar:
        assert isinstance(bar, PlainProgress)
        for _ in range(250):
            bar.update(4)
            bar.set_postfix(loss="1.25")
    text = out.getvalue()
    assert "\r" not in text
    lines = text.splitlines()
    assert len(lines) == 10  # 10 %, 20 %, ... 100 %: the last one is not repeated by close()
    assert lines[0].startswith("tokenize: 100/1000 sample (10%)")
    assert lines[-1].startswith("tokenize: 1000/1000 sample (100%)") and lines[-1].endswith("loss=1.25")


def test_plain_close_shows_an_unfinished_state_and_resumes_from_initial() -> None:
    out = io.StringIO()
    bar = progress_bar(200, "train", unit="step", initial=150, stream=out)
    bar.update(3)
    bar.close()
    bar.close()  # idempotent
    assert out.getvalue().splitlines() == [out.getvalue().splitlines()[0]]
    assert out.getvalue().startswith("train: 153/200 step (76%)")


def test_plain_time_interval() -> None:
    out = io.StringIO()
    bar = PlainProgress(10**9, "ingest", stream=out, interval=0.0)  # every update is "a minute later"
    bar.update(1)
    bar.update(1)
    assert len(out.getvalue().splitlines()) == 2


def test_terminal_gets_tqdm_and_disabled_gets_nothing() -> None:
    tty = _Tty()
    bar = progress_bar(10, "crops", stream=tty, unit="crop")
    assert isinstance(bar, tqdm)
    bar.update(10)
    bar.close()
    assert "crops" in tty.getvalue()
    quiet = io.StringIO()
    with progress_bar(10, "label", False, stream=quiet) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""

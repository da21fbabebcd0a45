"""The progress display: a bar and lines cut to the width in a terminal, plain lines elsewhere."""

import io

from rich.console import Console

from fedcomp.engines.progress import ROUND_LINE, LineWriter, run_progress

ROUND = "round   3/20  down   39.21 kB  up   39.21 kB  wire   79.96 kB  loss 0.8864  accuracy 0.7133"


def test_in_a_terminal_lines_fit_the_width_and_the_bar_follows_the_rounds():
    screen = io.StringIO()
    console = Console(file=screen, force_terminal=True, width=50, color_system=None)
    with run_progress("[2/4] digits topk", 20, console=console):
        print(ROUND)
        print("round 1: client 1 failed: InjectedFault: client 1 crashed in round 1 (faults.crash)")
    text = screen.getvalue()
    failure = "round 1: client 1 failed: InjectedFault: client 1 crashed in round 1 (faults.crash)"
    assert f"{ROUND[:49]}…\n" in text and f"{failure[:49]}…\n" in text  # 50 columns, the last one "…"
    assert "[2/4] digits topk round" in text and "3/20" in text  # the bar, drawn while it ran


def test_outside_a_terminal_nothing_changes(capsys):
    console = Console(file=io.StringIO(), force_terminal=False)
    with run_progress("digits", 20, console=console):
        print(ROUND)
    assert capsys.readouterr().out == ROUND + "\n"
    assert console.file.getvalue() == ""


def test_line_writer_hands_over_whole_lines():
    lines = []
    writer = LineWriter(lines.append)
    writer.write("a\nb")
    writer.write("c\n\nd")
    writer.flush()
    assert lines == ["a", "bc", "", "d"]
    assert ROUND_LINE.match(ROUND).groups() == ("3", "20")

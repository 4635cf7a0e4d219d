"""The CLI's line printer against a real pipe that nobody reads: put never blocks, drops are counted and shown."""

from __future__ import annotations

import fcntl
import io
import os
import re
import threading

from rt_physio.console import LinePrinter

F_SETPIPE_SZ = 1031  # Linux fcntl: set a pipe's capacity (rounded up to a page)


def _pipe(capacity: int = 4096) -> tuple[int, io.TextIOWrapper]:
    read_fd, write_fd = os.pipe()
    fcntl.fcntl(write_fd, F_SETPIPE_SZ, capacity)
    return read_fd, open(write_fd, "w", encoding="utf-8")  # closed by the test


def _read_all(fd: int) -> str:
    chunks = []
    while chunk := os.read(fd, 65536):
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode()


def test_lines_are_printed_in_order_to_a_text_stream() -> None:
    out = io.StringIO()
    printer = LinePrinter(out, maxsize=1000)
    for i in range(500):
        printer.put(f"line {i}")
    printer.put(lambda: "made on the printer's thread")
    assert printer.close()
    assert out.getvalue().splitlines() == [f"line {i}" for i in range(500)] + ["made on the printer's thread"]
    assert (printer.written, printer.dropped) == (501, 0)


def test_a_pipe_nobody_reads_never_blocks_put_and_every_line_is_printed_or_counted() -> None:
    read_fd, stream = _pipe()
    printer = LinePrinter(stream, maxsize=50)
    n = 5000
    for i in range(n):  # a blocking writer would hang here once the 4-KiB pipe is full
        printer.put(f"prediction {i:05d} " + "x" * 200)  # 50 lines queued are more than the pipe holds
    assert printer.dropped > 0
    text: list[str] = []
    reader = threading.Thread(target=lambda: text.append(_read_all(read_fd)))
    reader.start()  # somebody reads at last: the printer catches up
    assert printer.close(timeout=30)
    stream.close()
    reader.join(30)
    lines = text[0].splitlines()
    printed = [int(line.split()[1]) for line in lines if line.startswith("prediction ")]
    notices = [int(m.group(1)) for line in lines if (m := re.match(r"rt-physio: (\d+) line\(s\) not printed", line))]
    assert printed == sorted(printed)  # in order
    assert printed[-1] == n - 1  # the newest line is never the one dropped
    assert len(printed) + sum(notices) == n  # every line printed, or counted in a notice
    assert sum(notices) == printer.dropped


def test_close_returns_when_the_output_stays_blocked() -> None:
    read_fd, stream = _pipe()
    printer = LinePrinter(stream, maxsize=10)
    for i in range(1000):
        printer.put(f"line {i} " + "y" * 1000)
    assert not printer.close(timeout=0.5)  # stuck in a write to the full pipe; the caller goes on
    threading.Thread(target=_read_all, args=(read_fd,), daemon=True).start()  # lets the stuck thread finish
    printer._thread.join(30)
    stream.close()


def test_a_closed_output_counts_lines_as_not_printed() -> None:
    read_fd, stream = _pipe()
    os.close(read_fd)  # the reader went away (`rt-physio run | head -1`)
    printer = LinePrinter(stream)
    for i in range(20):
        printer.put(f"line {i}")
    assert printer.close(timeout=30)
    assert printer.dropped == 20
    stream.close()

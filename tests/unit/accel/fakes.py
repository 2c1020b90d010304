"""Readers for the forked tests: what ``accel.ReaderInChild`` uses of a SheetsReader, without a Google client."""

from __future__ import annotations

import os


class CountingReader:
    """A request count, no Google client (``hook``) and no read budget (``pacer``)."""

    hook = None
    pacer = None

    def __init__(self) -> None:
        self.requests = 0

    def after_fork(self) -> None:
        pass


class PidReader(CountingReader):
    """In a forked child its request count becomes the child's pid: the task process then holds that pid."""

    def after_fork(self) -> None:
        self.requests = os.getpid()

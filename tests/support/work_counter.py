"""Deterministic measures of the interpreter's work (calls, bytecodes, memory): a profiling aid.

CPU time on a shared machine varies by tens of percent from run to run;
what a code path *does* does not. :class:`WorkCounter` counts, while it is
entered, the Python calls (each resumption of a coroutine counts as one),
the calls of built-in functions, the bytecode instructions executed in
Python frames and the memory blocks allocated (``tracemalloc``, net of
frees inside the counted region's own objects), on the current thread. Two
trees compared with the same harness then differ only by their code.
Counting slows the code down about a hundredfold: count a few thousand
operations, not a benchmark's worth. Not a test: pytest does not collect it.
"""

from __future__ import annotations

import sys
import tracemalloc
from types import FrameType, TracebackType
from typing import Any


class WorkCounter:
    """``with counter: ...`` adds that block's work to the counts (enter it again to add more)."""

    def __init__(self, *, allocations: bool = True) -> None:
        #: Bytecodes executed per function ("file:line name"), for :meth:`top`.
        self.by_function: dict[str, int] = {}
        self.calls = 0
        self.c_calls = 0
        self.opcodes = 0
        #: Memory blocks allocated and still alive at the end of the block (tracemalloc).
        self.blocks = 0
        self._allocations = allocations

    def _profile(self, frame: FrameType, event: str, arg: Any) -> None:
        if event == "c_call":
            self.c_calls += 1

    def _trace(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "call":
            self.calls += 1
            frame.f_trace_opcodes = True
            return self._trace_frame
        return None

    def _trace_frame(self, frame: FrameType, event: str, arg: Any) -> Any:
        if event == "opcode":
            self.opcodes += 1
            code = frame.f_code
            name = f"{code.co_filename.rsplit('/', 2)[-1]}:{code.co_firstlineno} {code.co_name}"
            self.by_function[name] = self.by_function.get(name, 0) + 1
        return self._trace_frame

    def __enter__(self) -> WorkCounter:
        if self._allocations:
            tracemalloc.start()
            self._before = tracemalloc.take_snapshot()
        sys.setprofile(self._profile)
        sys.settrace(self._trace)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        sys.settrace(None)
        sys.setprofile(None)
        if self._allocations:
            after = tracemalloc.take_snapshot()
            tracemalloc.stop()
            self.blocks += sum(
                stat.count_diff for stat in after.compare_to(self._before, "filename")
            )

    def top(self, count: int, lines: int = 25) -> str:
        """The functions that ran the most bytecodes, per operation."""
        ranked = sorted(self.by_function.items(), key=lambda item: -item[1])[:lines]
        return "\n".join(f"{n / count:8.1f}  {name}" for name, n in ranked)

    def per(self, count: int) -> str:
        """The counts divided by ``count`` operations, as one line."""
        line = (
            f"{self.calls / count:.1f} Python calls, {self.c_calls / count:.1f} built-in calls, "
            f"{self.opcodes / count:.0f} bytecodes"
        )
        if self._allocations:
            line += f", {self.blocks / count:.2f} blocks kept"
        return line + f" per operation ({count})"

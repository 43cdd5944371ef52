"""The C-simulation ``hls::stream`` stand-in: FIFO order, and every misuse is a reported error."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

pytestmark = pytest.mark.csim


def model(depth: int, ops: list[int]) -> tuple[list[int] | None, int]:
    """What a bounded FIFO of `depth` must do with the script (None = error)."""
    q: deque[int] = deque()
    out: list[int] = []
    high = 0
    for op in ops:
        if op >= 0:
            if len(q) >= depth:
                return None, high
            q.append(op)
            high = max(high, len(q))
        elif op == -1:
            if not q:
                return None, high
            out.append(q.popleft())
        elif op == -2:
            out.append(int(not q))
        else:
            out.append(int(len(q) >= depth))
    return out, high


@settings(max_examples=150, deadline=None)
@given(depth=st.sampled_from([1, 3, 4, 9]),
       ops=st.lists(st.one_of(st.integers(0, 1000), st.sampled_from([-1, -1, -2, -3])), max_size=40))
def test_stream_matches_bounded_fifo(hls, depth, ops):
    got, high = hls.stream_script(depth, ops)
    want, want_high = model(depth, ops)
    assert got == want
    assert high == want_high


def test_template_depth_overflow_is_reported(hls):
    out, high = hls.stream_script(4, [1, 2, 3, 4, -1, 5, -3])
    assert out == [1, 1] and high == 4
    out, _ = hls.stream_script(4, [1, 2, 3, 4, 5])
    assert out is None
    assert "fifo4" in hls.error() and "depth is too small" in hls.error() and "depth 4" in hls.error()


def test_read_from_empty_is_reported(hls):
    out, _ = hls.stream_script(4, [7, -1, -1])
    assert out is None and "empty stream" in hls.error()


def test_unsized_stream_needs_storage(hls):
    out, _ = hls.stream_script(0, [1])
    assert out is None and "unsized stream" in hls.error()
    out, _ = hls.stream_script(0, [-2, -3])
    assert out == [1, 1]  # empty, and full (capacity 0)

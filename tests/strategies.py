"""Hypothesis strategies shared by the parser property tests: building blocks, not tests."""

from __future__ import annotations

from hypothesis import strategies as st


@st.composite
def mutated(draw: st.DrawFn, data: bytes, max_edits: int = 6) -> bytes:
    """``data`` after a few random edits: flips, inserts, deletes, duplicated or cut lines."""
    out = bytearray(data)
    for _ in range(draw(st.integers(min_value=1, max_value=max_edits))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "dup_line", "drop_line", "cut"]))
        if not out:
            out.extend(draw(st.binary(min_size=1, max_size=20)))
            continue
        at = draw(st.integers(min_value=0, max_value=len(out) - 1))
        if op == "flip":
            out[at] = draw(st.integers(min_value=0, max_value=255))
        elif op == "insert":
            out[at:at] = draw(
                st.one_of(
                    st.binary(min_size=1, max_size=12),
                    st.sampled_from([b"~", b"*", b"\n", b"|", b",", b"/", b"88,", b"16,", b"<"]),
                )
            )
        elif op == "delete":
            del out[at : at + draw(st.integers(min_value=1, max_value=40))]
        elif op in ("dup_line", "drop_line"):
            lines = bytes(out).split(b"\n")
            i = draw(st.integers(min_value=0, max_value=len(lines) - 1))
            if op == "dup_line":
                lines.insert(i, lines[i])
            else:
                del lines[i]
            out = bytearray(b"\n".join(lines))
        else:
            del out[at:]
    return bytes(out)


def reflowed_x12(data: bytes, layout: str) -> bytes:
    """The same segments in another real-world layout (terminator placement, separators)."""
    text = data.replace(b"\r\n", b"\n").replace(b"~\n", b"~")
    if layout == "one_line":
        return text
    if layout == "newline_after":
        return text.replace(b"~", b"~\n")
    if layout == "newline_before":
        return text.replace(b"~", b"\n~")
    if layout == "crlf":
        return text.replace(b"~", b"~\r\n")
    raise ValueError(layout)


X12_LAYOUTS = ["one_line", "newline_after", "newline_before", "crlf"]

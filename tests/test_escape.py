"""Text a user chose, escaped for each reader: shown as it reads on a terminal, in rendered Markdown and on a plot,
and never run as an escape sequence, markup or mathtext."""

from __future__ import annotations

import html
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
from markdown_it import MarkdownIt  # noqa: E402

from hpsearch import escape  # noqa: E402

HOSTILE = ["cat\nerror: forged", "red\x1b[31m\x1b]0;title\x07", "rtl\u202eevil\r", "nul\x00tab\t",
           "<script>alert(1)</script>", "<img src=x onerror=alert(1)>", "a | b", "*bold* _em_ __strong__",
           "$x^2$ and $a^$", "`code` ``more``", "[link](http://x) ![img](y)", "&amp; &lt;", "~~gone~~",
           "back\\slash \\* \\", "https://example.com <https://example.com> <1@x.y> <!-- c --> <?p?>", "a <= b < c"]
RENDERER = MarkdownIt("commonmark").enable(["table", "strikethrough"])


def test_a_terminal_line_shows_control_characters_as_escapes():
    assert escape.terminal("cat\nerror: forged\x1b[31m") == "cat\\nerror: forged\\x1b[31m"
    assert escape.terminal("rtl\u202eevil\r\x00") == "rtl\\u202eevil\\r\\x00"
    assert escape.terminal("chats: été, 猫, a | b") == "chats: été, 猫, a | b"


@pytest.mark.parametrize("text", HOSTILE)
def test_a_terminal_line_carries_nothing_a_terminal_acts_on(text):
    shown = escape.terminal(text)
    assert shown.isprintable() and len(shown.splitlines()) == 1


@pytest.mark.parametrize("text", HOSTILE)
def test_markdown_renders_the_text_as_it_reads_in_a_paragraph_and_a_table_cell(text):
    inline = RENDERER.renderInline(escape.markdown(text))
    assert "<" not in inline and html.unescape(inline) == escape.terminal(text)
    table = RENDERER.render(f"| a | b |\n|---|---|\n| {escape.markdown(text)} | x |\n")
    (cell, other) = re.findall(r"<td>(.*?)</td>", table)
    assert html.unescape(cell) == escape.terminal(text) and other == "x"
    assert not re.search(r"(?<!\\)\$", escape.markdown(text))  # no `$` that a renderer with math would read


def test_markdown_leaves_words_joined_by_an_underscore_and_a_bare_less_than_alone():
    assert escape.markdown("val_accuracy >= 0.9, train_seconds") == "val_accuracy >= 0.9, train_seconds"
    assert escape.markdown("params <= 2,000 < 3") == "params <= 2,000 < 3"


@pytest.mark.parametrize("text", ["$x^2$", "$a^$", "cost $5 and $6", "a\\$b$"])
def test_a_plot_draws_the_text_as_it_reads(text):
    figure = plt.figure()
    try:
        drawn = figure.text(0, 0, escape.plot(text))
        literal = figure.text(0, 0.5, text, parse_math=False)
        figure.canvas.draw()  # invalid mathtext ($a^$) would raise here
        assert drawn.get_window_extent().width == pytest.approx(literal.get_window_extent().width)
    finally:
        plt.close(figure)

"""Text a user chose (a study's name, a class folder's, a failure's reason, a path) escaped for the program that
reads it: one function per reader, called where hpsearch writes for that reader. HTML has the standard library's
html.escape (report.py's index.html).
"""

from __future__ import annotations

import re

# Markdown's inline syntax: code, emphasis, links, entities, table cells, strikethrough, math, the backslash that
# escapes; `<` where it can start raw HTML or an autolink (not in "params <= 2,000"); `_` where it can start or end
# emphasis (not inside a word such as val_accuracy).
_MARKDOWN = re.compile(r"[\\`*\[\]&|~$]|<(?=[A-Za-z/!?]|[^\s<>]*>)|(?<![^\W_])_|_(?![^\W_])")


def terminal(text: str) -> str:
    """`text` for one line on a terminal or in a log: every character that is not printable (a newline, the ESC
    that starts a colour or cursor sequence, a bidirectional override) as its Python escape, such as \\n or \\x1b,
    so that no value ends its line, forges another or drives the terminal."""
    return "".join(c if c.isprintable() else ascii(c)[1:-1] for c in text)


def markdown(text: str) -> str:
    """`text` as literal Markdown inline text: shown as it reads, never as markup or HTML, and on one line (its
    control characters escaped as on a terminal)."""
    return _MARKDOWN.sub(r"\\\g<0>", terminal(text))


def plot(text: str) -> str:
    """`text` for a matplotlib title, label or legend: drawn as it reads, a `$` never starting mathtext."""
    return text.replace("$", r"\$")

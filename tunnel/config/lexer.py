"""OpenVPN config-file lexing: lines -> directives (name, arguments, optional inline block).

This follows OpenVPN 2.6 ``options.c`` (``parse_line()``, ``bypass_doubledash()``,
``check_inline_file()``, ``read_inline_file()``, ``read_config_file()``) rule for rule, so that a
file stock OpenVPN splits one way is split the same way here:

* Words are separated by C-locale whitespace (space, \\t, \\n, \\v, \\f, \\r; so CRLF files work).
* ``#`` or ``;`` at the *start of a word* starts a comment that runs to the end of the line
  (``port 1194 # x`` is a comment, ``a#b`` is one word). As in OpenVPN this holds even after a
  backslash: ``\\#`` at the start of a word is still a comment.
* ``"double quotes"`` group a word; inside them a backslash escapes only ``\\``, ``"`` and
  whitespace. ``'single quotes'`` group a word with no escapes at all. A closing quote ends the
  word at once (``"a"b`` is two words); a quote inside an unquoted word is an ordinary character.
* Outside single quotes a backslash may only escape ``\\``, ``"`` or whitespace; anything else
  (``c:\\x``) is an error. (Stock OpenVPN prints "Bad backslash usage" as a *warning* and
  silently drops the whole line, which can lose a security option; we refuse the file.)
* A leading ``--`` is dropped from the option name (``--port 1194`` is ``port 1194``).
* A line that is a single word ``<name>`` opens an inline block: every following line up to the
  first one whose text (after leading whitespace) starts with ``</name>`` is the option's value,
  kept verbatim with its newlines. The directive keeps the opening tag's line number.
* A UTF-8 byte-order mark at the start of the file is skipped; a NUL ends its line, as in C.

Deliberate differences, all of them "error instead of something surprising": a backslash at the
very end of a line is an error (OpenVPN would put the newline into the word), and a stray closing
tag ``</ca>`` is reported as such (OpenVPN would report a missing ``<//ca>``).

Line length is bounded as stock bounds it (``read_config_file()``: ``fgets`` into 257 bytes,
"Maximum option line length (256) exceeded" when a read fills 256): a line of 256 bytes or
more, its newline included, is an error, whatever it holds (a comment too). Lines inside an
inline block are exempt, as in stock (``read_inline_file()`` reads them in pieces). So a
multi-megabyte ``push`` line is refused when the file is read, never when a client arrives.
Stock's other limits (256-character words, 16 words a line; extra words are dropped) are not
enforced.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum, auto

from tunnel.config.diagnostics import config_error, quote

__all__ = [
    "OPTION_LINE_SIZE", "Directive", "check_line_length", "count_lines", "lex_config",
    "split_words",
]

# isspace() in the C locale; Python's str.isspace() would also accept Unicode spaces.
_C_SPACE = frozenset(" \t\n\v\f\r")
_COMMENT_START = frozenset("#;")
# What a backslash may escape outside single quotes (OpenVPN: '\\', '"' or space()).
_ESCAPABLE = frozenset('\\"') | _C_SPACE
_BOM = "\ufeff"
# OPTION_LINE_SIZE in options.h: a line (with its newline) must stay below it.
OPTION_LINE_SIZE = 256


@dataclass(frozen=True, slots=True)
class Directive:
    """One option as written in the file."""

    line: int  # 1-based; for an inline block, the line of the opening <name> tag
    name: str  # the option name, without a leading "--"
    args: tuple[str, ...] = ()
    inline: str | None = None  # the body of an inline <name>...</name> block, verbatim


class _State(Enum):
    BETWEEN_WORDS = auto()
    UNQUOTED = auto()
    DOUBLE_QUOTED = auto()
    SINGLE_QUOTED = auto()


def _subject(words: list[str]) -> str:
    """Which option a lexing error belongs to, as far as the line got."""
    return f"option {quote(words[0])}" if words else "the option name"


def split_words(line: str, *, source: str, lineno: int) -> list[str]:
    """Split one config line into words (OpenVPN ``parse_line()``); [] for blank/comment lines."""
    line = line.split("\0", 1)[0]
    words: list[str] = []
    word: list[str] = []
    state = _State.BETWEEN_WORDS
    backslash = False
    for ch in line:
        if not backslash and ch == "\\" and state is not _State.SINGLE_QUOTED:
            backslash = True
            continue
        out = ""
        word_done = False
        if state is _State.BETWEEN_WORDS:
            if ch not in _C_SPACE:
                if ch in _COMMENT_START:
                    # OpenVPN tests for a comment before it looks at the backslash.
                    backslash = False
                    break
                if not backslash and ch == '"':
                    state = _State.DOUBLE_QUOTED
                elif not backslash and ch == "'":
                    state = _State.SINGLE_QUOTED
                else:
                    out = ch
                    state = _State.UNQUOTED
        elif state is _State.UNQUOTED:
            if not backslash and ch in _C_SPACE:
                word_done = True
            else:
                out = ch
        elif state is _State.DOUBLE_QUOTED:
            if not backslash and ch == '"':
                word_done = True
            else:
                out = ch
        elif ch == "'":  # single-quoted: no escapes at all
            word_done = True
        else:
            out = ch
        if word_done:
            words.append("".join(word))
            word = []
            state = _State.BETWEEN_WORDS
        if backslash and out and out not in _ESCAPABLE:
            raise config_error(
                source,
                lineno,
                f"{_subject(words)}: bad backslash ('\\') before {quote(out)}: outside single "
                "quotes a backslash only escapes '\\', '\"' or a space (write '\\\\' for a "
                "literal backslash)",
            )
        backslash = False
        if out:
            word.append(out)

    if backslash:
        raise config_error(
            source,
            lineno,
            f"{_subject(words)}: the line ends with a backslash (OpenVPN has no line "
            "continuation; write '\\\\' for a literal backslash)",
        )
    if state is _State.DOUBLE_QUOTED:
        raise config_error(source, lineno, f'{_subject(words)}: no closing quotation mark (")')
    if state is _State.SINGLE_QUOTED:
        raise config_error(source, lineno, f"{_subject(words)}: no closing single quote (')")
    if state is _State.UNQUOTED:
        words.append("".join(word))
    return words


def _strip_double_dash(name: str) -> str:
    # bypass_doubledash(): only when something follows the dashes, so a lone "--" stays "--".
    return name[2:] if len(name) >= 3 and name.startswith("--") else name


def _inline_tag(words: list[str]) -> str | None:
    """The tag name if this line opens an inline block (a single word ``<name>``)."""
    if len(words) == 1 and len(words[0]) >= 2 and words[0][0] == "<" and words[0][-1] == ">":
        return words[0][1:-1]
    return None


def _c_lstrip(text: str) -> str:
    return text.lstrip("".join(_C_SPACE))


def count_lines(text: str) -> int:
    """How many lines the text has, as an editor counts them (the last line's number)."""
    if not text:
        return 0
    return text.count("\n") + (0 if text.endswith("\n") else 1)


def check_line_length(
    line: str, *, newline: bool, source: str, lineno: int, extra: int = 0
) -> None:
    """Stock's limit: the line's bytes (its newline and `extra` bytes counted) below 256."""
    if len(line) < OPTION_LINE_SIZE - 1 - extra:
        return  # the common case, without encoding (a character is at least one byte)
    size = len(line.encode("utf-8", "surrogateescape")) + newline + extra
    if size < OPTION_LINE_SIZE:
        return
    first = line.split(None, 1)[0][:40] if line.split(None, 1) else ""
    subject = "a comment line" if first[:1] in _COMMENT_START else f"option {quote(first)}"
    raise config_error(
        source, lineno,
        f"{subject}: maximum option line length ({OPTION_LINE_SIZE}) exceeded: the line is "
        f"{size} bytes with its newline (OpenVPN refuses lines of {OPTION_LINE_SIZE} bytes or "
        "more; put long values in a file)",
    )


def lex_config(text: str, *, source: str) -> list[Directive]:
    """All directives of a config text, in order, with their line numbers."""
    bom = 0
    if text.startswith(_BOM):
        text = text[len(_BOM) :]
        bom = len(_BOM.encode())
    lines = text.split("\n")
    final_newline = bool(lines) and lines[-1] == ""
    if final_newline:
        lines.pop()  # the empty string after a final newline is not a line
    last = len(lines) - 1
    directives: list[Directive] = []
    index = 0
    while index < len(lines):
        lineno = index + 1
        check_line_length(lines[index], newline=index < last or final_newline, source=source,
                          lineno=lineno, extra=bom if index == 0 else 0)
        words = split_words(lines[index], source=source, lineno=lineno)
        index += 1
        if not words:
            continue
        words[0] = _strip_double_dash(words[0])
        tag = _inline_tag(words)
        if tag is None:
            directives.append(Directive(lineno, words[0], tuple(words[1:])))
            continue
        if tag.startswith("/"):
            raise config_error(
                source,
                lineno,
                f"stray closing tag {quote(words[0])} without an opening <{tag[1:]}>",
            )
        close_tag = f"</{tag}>"
        body: list[str] = []
        while index < len(lines) and not _c_lstrip(lines[index]).startswith(close_tag):
            body.append(lines[index] + "\n")
            index += 1
        if index == len(lines):
            raise config_error(
                source,
                lineno,
                f"option {quote(tag)}: inline block <{tag}> is never closed (no {close_tag} line)",
            )
        index += 1  # the closing tag's line; OpenVPN ignores anything after the tag on it
        directives.append(Directive(lineno, tag, (), "".join(body)))
    return directives

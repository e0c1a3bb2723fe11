"""The lexer against OpenVPN 2.6's parse_line()/read_inline_file() rules.

The expected word lists for the quoting cases were checked against the stock openvpn 2.6.14
binary (``user ...`` lines, read back from its --verb 4 option dump).
"""

from __future__ import annotations

import pytest

from tunnel.config.lexer import Directive, count_lines, lex_config, split_words
from tunnel.protocol.errors import ConfigError


def words(line: str) -> list[str]:
    return split_words(line, source="t.conf", lineno=7)


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        ("port 1194", ["port", "1194"]),
        ("  port\t1194  ", ["port", "1194"]),
        ("port 1194\r", ["port", "1194"]),  # CRLF files
        ("", []),
        ("   ", []),
        ("# comment", []),
        ("; comment", []),
        ("  # indented comment", []),
        ("port 1194 # trailing comment", ["port", "1194"]),
        ("port 1194 ; trailing comment", ["port", "1194"]),
        ("user a#b", ["user", "a#b"]),  # a comment only starts a word
        ("user a;b", ["user", "a;b"]),
        ('user "a b" # c', ["user", "a b"]),
        ('push "route 10.0.0.0 255.0.0.0"', ["push", "route 10.0.0.0 255.0.0.0"]),
        ("push 'route 10.0.0.0 255.0.0.0'", ["push", "route 10.0.0.0 255.0.0.0"]),
        ('user "a # b"', ["user", "a # b"]),  # no comment inside quotes
        ('user "a\\"b"', ["user", 'a"b']),
        ('user "a\\\\b"', ["user", "a\\b"]),
        ("user 'a\\b'", ["user", "a\\b"]),  # no escapes inside single quotes
        ("user 'a\"b'", ["user", 'a"b']),
        ('user a"b', ["user", 'a"b']),  # a quote inside a word is a character
        ('user "a"b', ["user", "a", "b"]),  # a closing quote ends the word
        ("user \\\\x", ["user", "\\x"]),
        ("user a\\ b", ["user", "a b"]),  # escaped space
        ('user \\"x', ["user", '"x']),
        ("user \\#x", ["user"]),  # as in OpenVPN: '#' starts a comment even after '\'
        ('user ""', ["user", ""]),
        ("user ''", ["user", ""]),
        ("port 1194\0 garbage", ["port", "1194"]),  # a NUL ends the line, as in C
    ],
)
def test_split_words(line: str, expected: list[str]) -> None:
    assert words(line) == expected


@pytest.mark.parametrize(
    ("line", "fragments"),
    [
        ('push "route 10.0.0.0', ["t.conf:7:", "option 'push'", 'no closing quotation mark (")']),
        ("push 'abc", ["t.conf:7:", "option 'push'", "no closing single quote"]),
        ('"port 1194', ["t.conf:7:", "the option name", "no closing quotation"]),
        ('user "a\\x"', ["t.conf:7:", "option 'user'", "bad backslash", "'x'"]),
        ("ca c:\\openvpn\\ca.crt", ["t.conf:7:", "option 'ca'", "bad backslash"]),
        ("user abc\\", ["t.conf:7:", "option 'user'", "ends with a backslash"]),
    ],
)
def test_split_words_errors(line: str, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as info:
        words(line)
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


def test_double_dash_and_line_numbers() -> None:
    text = "# header\n\n--port 1194\nproto udp\n--\n"
    assert lex_config(text, source="t") == [
        Directive(3, "port", ("1194",)),
        Directive(4, "proto", ("udp",)),
        Directive(5, "--", ()),  # bypass_doubledash() needs something after the dashes
    ]


def test_byte_order_mark_is_skipped() -> None:
    assert lex_config("\ufeffclient\n", source="t") == [Directive(1, "client")]


def test_inline_block_keeps_body_and_line_numbers() -> None:
    text = (
        "client\n"
        "<ca>\n"
        "-----BEGIN CERTIFICATE-----\n"
        "  indented line kept as is\n"
        "-----END CERTIFICATE-----\n"
        "  </ca> anything after the tag is ignored\n"
        "dev tun\n"
    )
    assert lex_config(text, source="t") == [
        Directive(1, "client"),
        Directive(
            2,
            "ca",
            (),
            "-----BEGIN CERTIFICATE-----\n  indented line kept as is\n-----END CERTIFICATE-----\n",
        ),
        Directive(7, "dev", ("tun",)),
    ]


def test_inline_block_with_comment_after_tag_and_empty_body() -> None:
    directives = lex_config("<key> # comment\n</key>\n", source="t")
    assert directives == [Directive(1, "key", (), "")]


def test_only_a_lone_tag_opens_a_block() -> None:
    # "<ca> x" is two words, so it is an (unknown) option named "<ca>", not a block.
    assert lex_config("<ca> x\n", source="t") == [Directive(1, "<ca>", ("x",))]


def test_unclosed_inline_block() -> None:
    with pytest.raises(ConfigError) as info:
        lex_config("client\n<ca>\n-----BEGIN CERTIFICATE-----\n", source="t.conf")
    assert str(info.value) == (
        "t.conf:2: option 'ca': inline block <ca> is never closed (no </ca> line)"
    )


def test_stray_closing_tag() -> None:
    with pytest.raises(ConfigError) as info:
        lex_config("client\n</ca>\n", source="t.conf")
    assert str(info.value).startswith("t.conf:2: stray closing tag '</ca>'")


def test_message_never_spans_lines() -> None:
    # A control character in the source name or a value is escaped, not printed raw.
    with pytest.raises(ConfigError) as info:
        split_words('user "a\\\x0b', source="bad\nname", lineno=1)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("text", "lines"), [("", 0), ("a", 1), ("a\n", 1), ("a\nb", 2), ("a\n\n", 2)]
)
def test_count_lines(text: str, lines: int) -> None:
    assert count_lines(text) == lines

"""What an instance trusts in a config bundle, as pure rules (docs/edge.md, "What an instance
trusts").

The apply document (``EdgeApplyConfigDocument`` in template.yaml) enforces the same rules in awk
before ``haproxy -c`` ever reads a config; the function enforces them here before it publishes.
``tests/edge_trust_cases.py`` holds the one table of bad bundles both sides are tested with.

- **Signature.** The function signs :func:`statement` (purpose, ``bucket/key``, the bundle's
  SHA-256) with the stack's KMS key (ECDSA P-256, ``ECDSA_SHA_256`` over the statement's SHA-256,
  ``MessageType=DIGEST``); an instance verifies it with ``kms:Verify`` before it extracts
  anything.
- **Members.** Exactly the files the function writes (:data:`MEMBERS`), ``haproxy.cfg`` among
  them, each a regular file, once.
- **Directives.** Nothing that runs code, sets HAProxy's environment, or reads or writes a file
  outside the release (file names must be plain names: they resolve in the release directory, or
  in the certificates directory for ``crt``), the certificates directory (``crt-base``), the run
  directory (``stats socket``) or the state directory (``server-state-file``). Lines are split into
  words the way HAProxy splits them (quotes and backslashes removed, ``#`` comments dropped), so a
  quoted keyword is the same keyword, and a line under ``.if`` is checked like any other.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping

from ..errors import PermanentError

STATEMENT_PREFIX = "greenlight-edge-bundle:v1"
CONFIG = "haproxy.cfg"
CRT_LIST = "crt-list"
# render.render()'s three files and the certificate manifest (state.MANIFEST) entry.py adds.
MEMBERS = frozenset({CONFIG, "hosts.map", CRT_LIST, "certificates.tsv"})

# Keywords refused wherever they appear as a line's keyword (after "no"/"default", or as the
# option of "option"): code, environment, arbitrary files, debugging, privileges.
FORBIDDEN = frozenset(
    {
        "program",
        "command",
        "external-check",
        "setenv",
        "presetenv",
        "resetenv",
        "unsetenv",
        "insecure-fork-wanted",
        "insecure-setuid-wanted",
        "ssl-engine",
        "ssl-provider",
        "set-dumpable",
        "expose-experimental-directives",
        "pidfile",
        "ca-base",
        "server-state-base",
        "key-base",
        "module-load",
        ".include",
    }
)
# Keywords that end like a file or path keyword but are allowed (the first one is pinned below).
FILE_KEYWORDS_ALLOWED = frozenset({"server-state-file", "load-server-state-from-file"})
# Words whose next word is a file name: it must be a plain name (inside the release directory,
# or the certificates directory for crt), as must any word ending in "-file".
FILE_ARGUMENTS = frozenset(
    {"crt", "crt-list", "file", "lf-file", "-f", "config", "errorfile", "errorfiles"}
)
BIND_KEYWORDS = frozenset({"bind", "dgram-bind"})
PLAIN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_PLAIN = re.compile(rf"^{PLAIN}$")
_RUN_DIR = re.compile(rf"^\$\{{GREENLIGHT_RUN_DIR\}}(/{PLAIN})+$")
_STATE_DIR = re.compile(rf"^\$\{{GREENLIGHT_STATE_DIR\}}(/{PLAIN})+$")
CERTS_DIR = "${GREENLIGHT_CERTS_DIR}"
# Inside double quotes HAProxy expands $NAME, ${NAME} and ${NAME-default}, in any word, the
# keyword's too: only the instance's own GREENLIGHT_* variables, and a default only for the stats
# page's address, an IPv4 address (a default such as "lua-load" would spell a keyword).
_VARIABLE = re.compile(
    r"\$\{GREENLIGHT_[A-Z0-9_]+\}|\$\{GREENLIGHT_STATS_ADDRESS-[0-9]{1,3}(\.[0-9]{1,3}){3}\}"
)
# map converters (after a comma: they chain) and the map and ACL actions (a word of their own).
_FILE_CONVERTER = re.compile(r"(?:^|,)(map(_[a-z0-9]+)?|set-map|del-map|add-acl|del-acl)\(([^,)]*)")
# A certificate file name and its SNI names; blank lines and comments. No options in brackets.
_CRT_LIST_LINE = re.compile(rf"^([ \t]*|[ \t]*#.*|{PLAIN}\.pem([ \t]+[A-Za-z0-9*!._-]+)*[ \t]*)\Z")
_WHITESPACE = " \t\r\v\f"  # C's isspace, as HAProxy's parser (a line ends at \n)
_SPACES = re.compile(r"[ \t]+")
_SPECIAL = re.compile(r"[\"'\\#$\r\v\f]")


def statement(bucket: str, key: str, sha256: str) -> bytes:
    """What the function signs for one bundle: its purpose, where it lives, and its hash."""
    return f"{STATEMENT_PREFIX}\n{bucket}/{key}\n{sha256}".encode()


def statement_digest(bucket: str, key: str, sha256: str) -> bytes:
    """The SHA-256 of :func:`statement`: the KMS ``DIGEST`` message signed and verified."""
    return hashlib.sha256(statement(bucket, key, sha256)).digest()


def members_problem(names: Iterable[str]) -> str | None:
    """Why a bundle with these member names is refused, or None."""
    seen: set[str] = set()
    for name in names:
        if name not in MEMBERS:
            return f"the bundle holds {name!r}, which is not one of {', '.join(sorted(MEMBERS))}"
        if name in seen:
            return f"the bundle holds {name!r} twice"
        seen.add(name)
    if CONFIG not in seen:
        return f"the bundle has no {CONFIG}"
    return None


def words(line: str) -> tuple[list[str], str | None]:
    """HAProxy's words of one config line (quotes and escapes removed, the comment dropped, C's
    ``isspace`` between words), and why the line is refused for how it is written, or None:
    a variable that is not the instance's, or a ``\\x`` escape (it could spell any keyword)."""
    if not _SPECIAL.search(line):
        return [w for w in _SPACES.split(line) if w], None
    return _Words(line).split()


class _Words:
    """The character-by-character split, for lines with quotes, escapes or comments."""

    def __init__(self, line: str) -> None:
        self.line = line
        self.out: list[str] = []
        self.word: str | None = None
        self.quote = ""

    def add(self, text: str) -> None:
        self.word = (self.word or "") + text

    def split(self) -> tuple[list[str], str | None]:
        line, i = self.line, 0
        while i < len(line):
            char = line[i]
            if self.quote != "'" and char == "\\" and i + 1 < len(line):
                if line[i + 1] == "x":
                    return self.out, "hex escapes are not allowed"
                self.add(line[i + 1])
                i += 2
            elif self.quote == '"' and char == "$":
                matched = _VARIABLE.match(line, i)
                if matched is None:
                    return self.out, "expands a variable that is not the instance's"
                self.add(matched.group(0))
                i = matched.end()
            elif not self.quote and char == "#":
                break
            else:
                self.character(char)
                i += 1
        if self.word is not None:
            self.out.append(self.word)
        return self.out, None

    def character(self, char: str) -> None:
        if self.quote:
            if char == self.quote:
                self.quote = ""
            else:
                self.add(char)
        elif char in "\"'":
            self.quote = char
            self.add("")
        elif char in _WHITESPACE:
            if self.word is not None:
                self.out.append(self.word)
            self.word = None
        else:
            self.add(char)


def _keywords(line_words: list[str]) -> list[str]:
    """The keyword of a line, and what "no", "default" and "option" apply to."""
    found = []
    rest = line_words
    while rest:
        found.append(rest[0])
        if rest[0] not in ("no", "default", "option"):
            break
        rest = rest[1:]
    return found


def _forbidden(keyword: str) -> bool:
    return (
        keyword in FORBIDDEN
        or keyword.startswith(("lua-", "lua."))
        or (keyword.endswith(("-file", "-path")) and keyword not in FILE_KEYWORDS_ALLOWED)
    )


def _pinned_problem(keyword: str, args: list[str]) -> str | None:
    """The directives allowed only with a path in their own directory."""
    first, second = _at(args, 0), _at(args, 1)
    problem = None
    if keyword == "crt-base" and first != CERTS_DIR:
        problem = f"crt-base must be {CERTS_DIR}"
    elif keyword == "stats" and first == "socket" and not _RUN_DIR.match(second):
        problem = "stats socket must be in ${GREENLIGHT_RUN_DIR}"
    elif keyword == "server-state-file" and not _STATE_DIR.match(first):
        problem = "server-state-file must be in ${GREENLIGHT_STATE_DIR}"
    elif keyword == "errorfile" and not _PLAIN.match(second):
        problem = f"errorfile {second!r}: only a file of the release"
    elif keyword in BIND_KEYWORDS and (first.startswith("/") or "@" in first):
        problem = f"{keyword} {first!r}: only an address and a port"
    return problem


def _word_problem(line_words: list[str]) -> str | None:
    """File names that are not plain names: an option's argument (from the third word: the
    second names things, a server or a user, which may be any word) and a converter's."""
    for n, word in enumerate(line_words):
        takes_file = word in FILE_ARGUMENTS or word.endswith("-file")
        if takes_file and 1 < n < len(line_words) - 1 and not _PLAIN.match(line_words[n + 1]):
            return f"{word} {line_words[n + 1]!r}: only a file of the release"
        for converter in _FILE_CONVERTER.finditer(word):
            if not _PLAIN.match(converter.group(3)):
                return f"{converter.group(1)}({converter.group(3)}): only a file of the release"
    return None


def line_problem(line: str) -> str | None:
    """Why one haproxy.cfg line is refused, or None."""
    line_words, problem = words(line)
    if problem or not line_words:
        return problem
    for keyword in _keywords(line_words):
        if _forbidden(keyword):
            return f"{keyword} is not allowed"
    return _pinned_problem(line_words[0], line_words[1:]) or _word_problem(line_words)


def _at(items: list[str], index: int) -> str:
    return items[index] if index < len(items) else ""


def config_problems(text: str) -> list[str]:
    """``haproxy.cfg: line N: why: the line`` for each refused line of a config."""
    problems = []
    for number, line in enumerate(text.split("\n"), start=1):
        why = line_problem(line)
        if why:
            problems.append(f"{CONFIG}: line {number}: {why}: {line.strip()[:120]}")
    return problems


def crt_list_problems(text: str) -> list[str]:
    """``crt-list: line N: ...`` for each line that is not a certificate file name and SNI names
    (no per-certificate options: they could name files)."""
    problems = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not _CRT_LIST_LINE.match(line):
            problems.append(
                f"{CRT_LIST}: line {number}: only FILE.pem and SNI names: {line.strip()[:120]}"
            )
    return problems


def bundle_problems(files: Mapping[str, bytes]) -> list[str]:
    """Every reason the instances would refuse these files, empty when they would not."""
    members = members_problem(files)
    if members:
        return [members]
    # Bytes as HAProxy reads them: one character per byte.
    problems = config_problems(files[CONFIG].decode("latin-1"))
    if CRT_LIST in files:
        problems += crt_list_problems(files[CRT_LIST].decode("latin-1"))
    return problems


def check_bundle(files: Mapping[str, bytes]) -> None:
    """PermanentError naming every refused member or line (the function's check before it
    publishes: what it would sign must pass the instances' own check)."""
    problems = bundle_problems(files)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise PermanentError(f"refused to publish: {shown}{more}")

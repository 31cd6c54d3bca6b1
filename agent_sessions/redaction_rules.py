"""What a secret looks like: the patterns of redaction, compiled.

The 22 default patterns (:data:`DEFAULT_PATTERNS`), the validation of a
``REDACTION`` setting (:func:`redaction_problem`) and its compilation
(:func:`compile_config`) into a :class:`RedactionConfig`, which redacts one
string. :mod:`agent_sessions.redaction` walks events and JSON values with it
and re-exports the public names here.

How a string stays cheap to check: strings shorter than the shortest
possible secret are skipped; each default pattern has a literal prefilter
(every match contains one of a few fixed words such as ``sk-`` or ``://``,
looked for in the lower-cased string with ``str.__contains__``), so most
strings are never searched by a regex at all; and the case-insensitive
patterns run case-sensitively on the lower-cased string, which keeps the
regex engine's fast literal search.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "CATEGORIZED",
    "CUSTOM_CATEGORY",
    "DEFAULT_PATTERNS",
    "DEFAULT_REPLACEMENT",
    "RedactionConfig",
    "compile_config",
    "redaction_problem",
]

#: The replacement text unless configured otherwise.
DEFAULT_REPLACEMENT = "[REDACTED]"
#: The ``replacement`` value that selects ``"[REDACTED:<category>]"``.
CATEGORIZED = "categorized"
#: The category of a user's pattern given as a bare regex.
CUSTOM_CATEGORY = "custom"

# Each default: (category, regex, case-insensitive?, words, needs). A
# case-insensitive regex is written in lower case and runs, case-sensitively,
# on the lower-cased text (much faster than IGNORECASE, which defeats the
# regex engine's literal-prefix search); its public form is ``(?i:…)``.
# The prefilter, which lets most strings skip a rule without running its
# regex: ``words``, literals one of which every match contains (lower case
# for case-insensitive rules, looked for in the lower-cased text), and
# ``needs``, characters one of which every match contains. A rule whose match
# could lack them would be skipped wrongly: keep them in step with the regex.
_DEFAULTS: tuple[tuple[str, str, bool, tuple[str, ...], str], ...] = (
    # Cloud provider keys
    ("aws_access_key", r"AKIA[0-9A-Z]{16}", False, ("AKIA",), ""),
    ("aws_secret_key", r"aws[_-]?secret[_-]?access[_-]?key\s*[:=]\s*\S+", True, ("aws",), ":="),
    ("gcp_api_key", r"AIza[0-9A-Za-z_-]{35}", False, ("AIza",), ""),
    # AI providers: the specific prefixes before the generic ``sk-`` one.
    ("anthropic_key", r"sk-ant-api\S{20,}", False, ("sk-ant-api",), "-"),
    ("openai_key", r"sk-proj-[A-Za-z0-9_-]{20,}", False, ("sk-proj-",), "-"),
    ("openai_legacy_key", r"sk-[A-Za-z0-9]{40,}", False, ("sk-",), "-"),
    # Version control
    ("github_pat", r"ghp_[A-Za-z0-9]{36}", False, ("ghp_",), "_"),
    ("github_oauth", r"gho_[A-Za-z0-9]{36}", False, ("gho_",), "_"),
    ("github_app", r"ghs_[A-Za-z0-9]{36}", False, ("ghs_",), "_"),
    ("github_refresh", r"ghr_[A-Za-z0-9]{36}", False, ("ghr_",), "_"),
    ("github_fine_pat", r"github_pat_[A-Za-z0-9_]{22,}", False, ("github_pat_",), "_"),
    ("gitlab_token", r"glpat-[A-Za-z0-9_-]{20,}", False, ("glpat-",), "-"),
    # Authentication tokens
    (
        "jwt_token",
        r"eyJ[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{10,}",
        False,
        ("eyJ",),
        ".",
    ),
    ("bearer_token", r"bearer\s+[a-z0-9._~+/=-]{20,}", True, ("bearer",), ""),
    # Credential assignments: ``name: value`` or ``name=value``, any case.
    ("password", r"(?:password|passwd|pwd)\s*[:=]\s*\S+", True, ("passw", "pwd"), ":="),
    ("api_key_generic", r"api[_-]?key\s*[:=]\s*\S+", True, ("api",), ":="),
    ("secret_key", r"secret[_-]?key\s*[:=]\s*\S+", True, ("secret",), ":="),
    ("access_token", r"access[_-]?token\s*[:=]\s*\S+", True, ("access",), ":="),
    ("auth_token", r"auth[_-]?token\s*[:=]\s*\S+", True, ("auth",), ":="),
    # Connection strings (credentials usually sit in the URL); SQLAlchemy's
    # ``postgresql+psycopg://`` spelling included.
    (
        "connection_string",
        r"(?:postgres(?:ql)?|mysql|redis|mongodb|amqp|mssql)(?:\+[a-z0-9]+)?://\S+",
        True,
        ("://",),
        ":",
    ),
    # PEM private keys: the whole block when it is complete, else the header
    # and the base64 lines that follow it.
    (
        "private_key",
        r"-----BEGIN (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"
        r"(?:[\s\S]*?-----END (?:RSA |EC |DSA |OPENSSH |ENCRYPTED )?PRIVATE KEY-----"
        r"|[A-Za-z0-9+/=\r\n]*)",
        False,
        ("-----BEGIN",),
        "-",
    ),
    # Environment-style secrets
    (
        "env_secret",
        r"(?:database_url|redis_url|secret_key_base|encryption_key|private_key)\s*=\s*\S+",
        True,
        ("_url", "secret_key_base", "encryption_key", "private_key"),
        "=",
    ),
)

#: The 22 default categories and their regexes, in the order they are applied.
DEFAULT_PATTERNS: tuple[tuple[str, str], ...] = tuple(
    (category, f"(?i:{regex})" if insensitive else regex)
    for category, regex, insensitive, _, _ in _DEFAULTS
)

_CONFIG_KEYS = frozenset({"enabled", "patterns", "replacement", "deep_scan", "scan_metadata"})


@dataclass(frozen=True, slots=True)
class _Rule:
    """One pattern as applied: where to search, and which strings to skip."""

    category: str
    regex: re.Pattern[str]
    # For case-insensitive defaults: the lower-case regex to run on the
    # lower-cased text; None: run ``regex`` on the text itself.
    lowered: re.Pattern[str] | None
    # The prefilter (see _DEFAULTS); None and "": none (the user's patterns).
    words: tuple[str, ...] | None
    needs: str
    # Strings shorter than this cannot match.
    min_length: int


@dataclass(frozen=True, slots=True)
class RedactionConfig:
    """A compiled redaction configuration (see :func:`compile_config`).

    Attributes:
        enabled: Whether the write path redacts (``redact()`` always does).
        replacement: The fixed replacement text, or None in categorized mode.
        deep_scan: Scan every string of ``data`` (else only the per-type fields).
        scan_metadata: Scan ``metadata`` too (always deeply).
        categories: The active categories, in the order they are applied.
    """

    enabled: bool = False
    replacement: str | None = DEFAULT_REPLACEMENT
    deep_scan: bool = True
    scan_metadata: bool = False
    categories: tuple[str, ...] = ()
    rules: tuple[_Rule, ...] = field(default=(), repr=False)
    # The prefilter's plan: the rules' required characters, their distinct
    # minimum lengths (sorted), and the rules to try per (characters present,
    # length bracket), filled in as strings come (see _candidates).
    quick_chars: str = ""
    lengths: tuple[int, ...] = ()
    plans: dict[tuple[int, int], tuple[_Rule, ...]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def redact_string(self, text: str) -> tuple[str, int]:
        """Return ``text`` with every secret replaced, and how many were replaced.

        Rules are applied one after the other, each to the previous one's
        result (as ASM does), so a secret inside another's match is counted
        once per rule that replaced something.
        """
        size = len(text)
        total = 0
        lowered: str | None = None
        for rule in self._candidates(text, size):
            if rule.words is not None:
                if rule.lowered is None:
                    haystack = text
                else:
                    if lowered is None:
                        lowered = text.lower()
                    haystack = lowered
                if not any(word in haystack for word in rule.words):
                    continue
            replacement = (
                f"[REDACTED:{rule.category}]" if self.replacement is None else self.replacement
            )
            # Lower-casing keeps every position only when no character
            # expands (e.g. "İ" becomes two); otherwise search the text itself.
            if rule.lowered is not None and lowered is not None and len(lowered) == size:
                text, count = _replace_spans(text, rule.lowered.finditer(lowered), replacement)
            else:
                # A template for subn(): backslashes in the replacement stay literal.
                text, count = rule.regex.subn(replacement.replace("\\", "\\\\"), text)
            if count:
                total += count
                lowered = None
        return text, total

    def _candidates(self, text: str, size: int) -> tuple[_Rule, ...]:
        """The rules that could match ``text``: long enough, required characters present.

        Which rules those are depends only on which of :attr:`quick_chars`
        the text holds and on the length bracket it falls in, so the answer
        is computed once per such combination and kept: most strings then
        cost a few substring tests and one dictionary lookup.
        """
        mask = 0
        for index, char in enumerate(self.quick_chars):
            if char in text:
                mask |= 1 << index
        key = (mask, bisect.bisect_right(self.lengths, size))
        candidates = self.plans.get(key)
        if candidates is None:
            present = {c for index, c in enumerate(self.quick_chars) if mask & (1 << index)}
            longest = self.lengths[key[1] - 1] if key[1] else 0
            candidates = self.plans[key] = tuple(
                rule
                for rule in self.rules
                if rule.min_length <= longest and (not rule.needs or present & set(rule.needs))
            )
        return candidates


def _replace_spans(
    text: str, matches: Iterable[re.Match[str]], replacement: str
) -> tuple[str, int]:
    parts: list[str] = []
    end = 0
    for match in matches:
        parts.append(text[end : match.start()])
        parts.append(replacement)
        end = match.end()
    if not parts:
        return text, 0
    parts.append(text[end:])
    return "".join(parts), len(parts) // 2


# --------------------------------------------------------------------------- configuration


def redaction_problem(value: object) -> str | None:
    """Why ``value`` is not a valid ``REDACTION`` setting, or None when it is.

    Used by the system check (``agent_sessions.E050``) and by
    :func:`compile_config`.
    """
    if not isinstance(value, Mapping):
        return f"must be a dict, not {type(value).__name__}"
    unknown = sorted(set(value) - _CONFIG_KEYS)
    if unknown:
        return f"has unknown keys {unknown}; known keys: {sorted(_CONFIG_KEYS)}"
    for key in ("enabled", "deep_scan", "scan_metadata"):
        if key in value and not isinstance(value[key], bool):
            return f"[{key!r}] must be True or False, got {value[key]!r}"
    replacement = value.get("replacement", DEFAULT_REPLACEMENT)
    if not isinstance(replacement, str):
        return f"['replacement'] must be a string or 'categorized', got {replacement!r}"
    try:
        _patterns(value.get("patterns", "default"))
    except ValueError as exc:
        return f"['patterns'] {exc}"
    return None


def compile_config(value: Mapping[str, Any] | None) -> RedactionConfig:
    """Compile a ``REDACTION`` setting (a dict, all keys optional).

    Args:
        value: ``{"enabled", "patterns", "replacement", "deep_scan",
            "scan_metadata"}``; None means the defaults (disabled).

    Returns:
        The compiled configuration.

    Raises:
        ValueError: the value is invalid (the message says why).
    """
    value = {} if value is None else value
    problem = redaction_problem(value)
    if problem is not None:
        raise ValueError(f"REDACTION {problem}")
    replacement = value.get("replacement", DEFAULT_REPLACEMENT)
    use_defaults, custom = _patterns(value.get("patterns", "default"))
    rules = _DEFAULT_RULES if use_defaults else ()
    rules += tuple(
        _Rule(category, regex, None, None, "", _min_length(regex)) for category, regex in custom
    )
    return RedactionConfig(
        enabled=bool(value.get("enabled", False)),
        replacement=None if replacement == CATEGORIZED else replacement,
        deep_scan=bool(value.get("deep_scan", True)),
        scan_metadata=bool(value.get("scan_metadata", False)),
        categories=tuple(dict.fromkeys(rule.category for rule in rules)),
        rules=rules,
        quick_chars="".join(sorted({char for rule in rules for char in rule.needs})),
        lengths=tuple(sorted({rule.min_length for rule in rules})),
    )


def _min_length(regex: re.Pattern[str]) -> int:
    """The length of the shortest string ``regex`` matches (1 when unknown)."""
    parser: Any = getattr(re, "_parser", None)  # the stdlib's own parser (Python ≥ 3.11)
    try:
        return max(1, int(parser.parse(regex.pattern, regex.flags).getwidth()[0]))
    except Exception:  # a future Python without it: no length shortcut
        return 1


def _default_rule(
    category: str, regex: str, insensitive: bool, words: tuple[str, ...], needs: str
) -> _Rule:
    exact = re.compile(regex, re.IGNORECASE if insensitive else 0)
    lowered = re.compile(regex) if insensitive else None
    return _Rule(category, exact, lowered, words, needs, _min_length(exact))


_DEFAULT_RULES: tuple[_Rule, ...] = tuple(_default_rule(*default) for default in _DEFAULTS)


def _patterns(value: object) -> tuple[bool, list[tuple[str, re.Pattern[str]]]]:
    """(use the defaults?, the user's patterns compiled) of a ``patterns`` value."""
    if value == "default" or value is None:
        return True, []
    if isinstance(value, Mapping):
        if set(value) != {"replace"}:
            raise ValueError(f"as a dict must be {{'replace': [...]}}, got keys {sorted(value)}")
        return False, _user_patterns(value["replace"])
    return True, _user_patterns(value)


def _user_patterns(value: object) -> list[tuple[str, re.Pattern[str]]]:
    if isinstance(value, str | bytes) or not isinstance(value, list | tuple):
        raise ValueError(
            "must be 'default', a list of regexes or [category, regex] pairs, "
            f"or {{'replace': [...]}}; got {value!r}"
        )
    compiled: list[tuple[str, re.Pattern[str]]] = []
    for index, item in enumerate(value):
        category = CUSTOM_CATEGORY
        regex = item
        if isinstance(item, list | tuple):
            if len(item) != 2 or not isinstance(item[0], str) or not item[0]:
                raise ValueError(
                    f"item {index} must be a regex or a [category, regex] pair, got {item!r}"
                )
            category, regex = item
        if isinstance(regex, re.Pattern):
            if not isinstance(regex.pattern, str):
                raise ValueError(f"item {index} is a bytes regex; use a str regex")
            pattern: re.Pattern[str] = regex
        elif isinstance(regex, str) and regex:
            try:
                pattern = re.compile(regex)
            except re.error as exc:
                raise ValueError(f"item {index} is not a valid regex ({exc}): {regex!r}") from None
        else:
            raise ValueError(f"item {index} must be a non-empty regex string, got {regex!r}")
        if pattern.search(""):
            raise ValueError(f"item {index} matches the empty string: {pattern.pattern!r}")
        compiled.append((category, pattern))
    return compiled

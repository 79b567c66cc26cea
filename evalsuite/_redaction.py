"""Personal data and secrets in production data, replaced by stable placeholders.

Production runs hold e-mail addresses, phone numbers, payment card numbers and API keys.
Everything reinstate writes from them (a captured case, an investigation's timeline, a
postmortem, a verdict and its report, an eval run file) replaces each with a placeholder
that keeps the shape the controls look at — an address at the same domain, a number with
the same layout and digit count (a card placeholder is Luhn-valid), a token with its
non-secret prefix — and gives the same value the same placeholder everywhere in one
document, so the document still means the same thing. One :class:`Redactor` serves one
document.

Placeholders are recognisable (:func:`placeholder_pattern`), so an expectation derived
from a redacted argument can match any value of the kind instead of the placeholder
alone: a regression case never gets looser for being redacted.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Collection
from typing import Any, Literal, TypeVar, get_args

from pydantic import BaseModel

from evalsuite._run import Run

ModelT = TypeVar("ModelT", bound=BaseModel)
RedactionKind = Literal["email", "phone", "card", "token"]
REDACTION_KINDS: tuple[RedactionKind, ...] = get_args(RedactionKind)
# National numbers (no +country code) are read as numbers of this region.
PHONE_REGION = "US"

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_EMAIL = re.compile(
    rf"(?<![\w.%+-])(?P<local>[A-Za-z0-9][A-Za-z0-9._%+-]{{0,63}})@(?P<domain>{_LABEL}(?:\.{_LABEL})+)"
)
# Not inside a word or a dashed id: digits in a hex digest or a UUID are no card number,
# and rewriting them would corrupt the fingerprints and ids that documents carry.
_CARD = re.compile(r"(?<![A-Za-z0-9.,-])\d(?:[ -]?\d){12,18}(?![A-Za-z0-9]|-[A-Za-z0-9])")
# Well-known token formats; only the ``secret`` group is replaced, so the prefix that says
# which service a token is for stays readable.
# A private key's body runs from its BEGIN line to the first END line after it
# (:func:`_private_keys`); not one pattern, whose lazy body scanned to the text's end for
# every BEGIN line with no END after it: quadratic in the text.
_KEY_BEGIN = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----")
_KEY_END = re.compile(r"-----END [A-Z ]*PRIVATE KEY-----")
_TOKENS = [re.compile(p) for p in (
    r"\beyJ(?P<secret>[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]*)",
    r"\b(?:sk|pk|rk)_(?:live|test)_(?P<secret>[A-Za-z0-9]{16,})",
    r"\bsk-(?:proj-|ant-(?:api\d\d-)?|svcacct-)?(?P<secret>[A-Za-z0-9_-]{20,})",
    r"\b(?:ghp|gho|ghu|ghs|ghr)_(?P<secret>[A-Za-z0-9]{30,})",
    r"\bgithub_pat_(?P<secret>[A-Za-z0-9_]{22,})",
    r"\bglpat-(?P<secret>[A-Za-z0-9_-]{20,})",
    r"\bxox[abposr]-(?P<secret>[A-Za-z0-9-]{10,})",
    r"\b(?:AKIA|ASIA)(?P<secret>[A-Z0-9]{16})\b",
    r"\bAIza(?P<secret>[0-9A-Za-z_-]{35})",
    r"(?i)\bbearer\s+(?P<secret>[A-Za-z0-9._~+/-]{16,}=*)",
    r"(?i)\b(?:api[_-]?key|access[_-]?token|auth[_-]?token|secret[_-]?key|client[_-]?secret"
    r"|password|passwd)[\"']?\s*[:=]\s*[\"']?(?P<secret>[^\s\"',;]{8,})",
)]
# Something every token format above starts with: one scan that rules all of them out.
_TOKEN_HINT = re.compile(
    r"-----BEGIN|eyJ|_live_|_test_|sk-|gh[pousr]_|github_pat_|glpat-|xox[abposr]-|AKIA|ASIA"
    r"|AIza|(?i:bearer|api[_-]?key|access[_-]?token|auth[_-]?token|secret[_-]?key"
    r"|client[_-]?secret|passw)")
# A field named for a secret: its value is one whatever it looks like (a password has no
# shape to find), so the whole string is a token placeholder.
_SECRET_KEY = re.compile(
    r"(?i)api[_-]?key|access[_-]?token|auth[_-]?token|refresh[_-]?token|secret[_-]?key"
    r"|client[_-]?secret|private[_-]?key|passw(?:or)?d|authorization|^(?:secret|token)$")
_TOKEN_MARK = "REDACTED-TOKEN-"
_EMAIL_MARK = "redacted-email-"
# Cheap tests that rule a detector out before it runs (most strings are ids, names and
# prose): the shortest text any detector finds (``a@b.c``), and the digits a card number
# and a phone number need at least (libphonenumber's shortest valid numbers, with their
# country code, have 6: +43 and a 4-digit national number).
_SHORTEST = 5
_CARD_DIGITS = 13
_PHONE_DIGITS = 6
_NO_DIGITS = str.maketrans("", "", "0123456789")
# Phone and card placeholders keep the layout; their digits are zeros and the number.
_NUMBER = re.compile(r"\+?\(?\d[\d ().-]*\d\)?")


def _digits(text: str) -> str:
    return re.sub(r"\D", "", text)


def _is_number_placeholder(text: str) -> bool:
    digits = _digits(text)
    return len(digits) >= 7 and digits.startswith("000")


def _relayout(raw: str, digits: str) -> str:
    """``raw`` with its digits replaced, in order, by ``digits``."""
    fill = iter(digits)
    return "".join(next(fill) if ch.isdigit() else ch for ch in raw)


def _token(number: int) -> str:
    """The token placeholder (the prefix before it stays)."""
    return f"{_TOKEN_MARK}{number}"


def _email(domain: str, number: int) -> str:
    """The e-mail placeholder: a numbered mailbox at the same domain."""
    return f"{_EMAIL_MARK}{number}@{domain}"


def _phone(raw: str, number: int) -> str:
    """The phone placeholder: the same layout, zeros, then the number."""
    return _relayout(raw, str(number).rjust(len(_digits(raw)), "0"))


def _card(raw: str, number: int) -> str:
    """The card placeholder: the same layout, zeros, the number and a Luhn check digit."""
    body = str(number).rjust(len(_digits(raw)) - 1, "0")
    from stdnum import luhn

    return _relayout(raw, body + luhn.calc_check_digit(body))


def _private_keys(text: str) -> list[tuple[int, int]]:
    """The body of each private key in ``text``: from a BEGIN line to the first END line at
    least one character after it, one pass over the text."""
    bodies = []
    at = 0
    while (begin := _KEY_BEGIN.search(text, at)) is not None:
        end = _KEY_END.search(text, begin.end() + 1)
        if end is None:
            break  # no END after this BEGIN line, so none after any later one either
        bodies.append((begin.end(), end.start()))
        at = end.end()
    return bodies


class Redactor:
    """Finds personal data and secrets in text and replaces them, the same value always
    by the same placeholder; one redactor serves one whole document (a case, an incident's
    investigation, a report)."""

    def __init__(self, phone_region: str = PHONE_REGION) -> None:
        self._region = phone_region
        self._seen: dict[tuple[RedactionKind, str], int] = {}
        self._counts: dict[RedactionKind, int] = dict.fromkeys(REDACTION_KINDS, 0)

    @property
    def kinds(self) -> list[RedactionKind]:
        """The kinds found so far, in a fixed order."""
        return [kind for kind in REDACTION_KINDS if self._counts[kind]]

    def _number(self, kind: RedactionKind, key: str) -> int:
        if (kind, key) not in self._seen:
            self._counts[kind] += 1
            self._seen[kind, key] = self._counts[kind]
        return self._seen[kind, key]

    def text(self, text: str) -> str:
        """``text`` with every e-mail address, phone and card number and token replaced.

        Detectors run in order (tokens, addresses, cards, phones); a span one of them took
        is not looked at again. Placeholders are numbered in order of first appearance.
        """
        if len(text) < _SHORTEST:
            return text
        digit_count = len(text) - len(text.translate(_NO_DIGITS))
        spans: list[tuple[int, int, RedactionKind, str, Callable[[int], str]]] = []
        # Which characters a span took already, so each new one is checked against its own
        # length, not against every span before it: text an agent wrote with tens of
        # thousands of addresses took minutes to redact (quadratic), after its trial's
        # timeout, holding the gate without a verdict.
        taken = bytearray(len(text))

        def take(start: int, end: int, kind: RedactionKind, key: str,
                 make: Callable[[int], str]) -> None:
            if start < end and 1 not in taken[start:end]:
                taken[start:end] = b"\x01" * (end - start)
                spans.append((start, end, kind, key, make))

        hinted = _TOKEN_HINT.search(text) is not None
        for start, end in (_private_keys(text) if hinted else ()):
            if _TOKEN_MARK not in text[start:end]:
                take(start, end, "token", text[start:end], _token)
        for pattern in (_TOKENS if hinted else ()):
            for match in pattern.finditer(text):
                secret = match.group("secret")
                if _TOKEN_MARK not in secret:
                    take(*match.span("secret"), "token", secret, _token)
        for match in (_EMAIL.finditer(text) if "@" in text else ()):
            local, domain = match.group("local"), match.group("domain").lower()
            if not local.startswith(_EMAIL_MARK):
                take(*match.span(), "email", f"{local.lower()}@{domain}",
                     functools.partial(_email, domain))
        # phonenumbers and python-stdnum load only for text with enough digits to hold a
        # card or a phone number: a command that redacts nothing does not pay for them.
        if digit_count >= min(_CARD_DIGITS, _PHONE_DIGITS):
            import phonenumbers
            from stdnum import luhn
        for match in (_CARD.finditer(text) if digit_count >= _CARD_DIGITS else ()):
            raw, digits = match.group(), _digits(match.group())
            if not digits.startswith("000") and luhn.is_valid(digits):
                take(*match.span(), "card", digits, functools.partial(_card, raw))
        phones = (phonenumbers.PhoneNumberMatcher(text, self._region,
                                                  leniency=phonenumbers.Leniency.VALID)
                  if digit_count >= _PHONE_DIGITS else ())
        for found in phones:
            raw = found.raw_string
            if not _is_number_placeholder(raw):
                key = phonenumbers.format_number(found.number,
                                                 phonenumbers.PhoneNumberFormat.E164)
                take(found.start, found.end, "phone", key, functools.partial(_phone, raw))
        # Put together once, not one copy of the text per span (quadratic as well).
        pieces: list[str] = []
        at = 0
        for start, end, kind, key, make in sorted(spans, key=lambda s: s[0]):
            pieces += (text[at:start], make(self._number(kind, key)))
            at = end
        pieces.append(text[at:])
        return "".join(pieces)

    def _keyed(self, key: str, text: str) -> str:
        """``text`` redacted; wholly a token placeholder when ``key`` names a secret and
        nothing in it was already found to be one."""
        text = self.text(text)
        if text and _SECRET_KEY.search(key) and _TOKEN_MARK not in text:
            return _token(self._number("token", text))
        return text

    def value(self, value: Any, keep: Collection[str] = ()) -> Any:
        """A JSON value with every string in it redacted.

        Args:
            value: Any JSON value (strings, numbers, lists, mappings).
            keep: Mapping keys whose values are left as they are, at any depth: digests,
                fingerprints and other values a later decision compares byte for byte.

        Returns:
            A copy with every string redacted; mapping keys themselves are kept.
        """
        return _walk(value, self._keyed, frozenset(keep))

    def value_in_place(self, value: Any, keep: Collection[str] = ()) -> Any:
        """:meth:`value`, changing ``value``'s own mappings and lists instead of copying
        them: for a caller whose data is its own (a dump made to be redacted).

        Returns:
            ``value`` itself (a string: its redacted copy).
        """
        return _walk_in_place(value, self._keyed, frozenset(keep))

    def record(self, record: ModelT, keep: Collection[str] = ()) -> ModelT:
        """A copy of a pydantic record with every string in it redacted.

        Args:
            record: The record, e.g. a verdict or a report.
            keep: Field names whose values are left as they are, at any depth (see
                :meth:`value`).

        Returns:
            A record of the same type, validated again.
        """
        # The dump is this call's own, so it is redacted in place: a copy of it beside the
        # dump was the largest thing a gate at thousands of cases held.
        return type(record).model_validate(
            _walk_in_place(record.model_dump(mode="json"), self._keyed, frozenset(keep)))

    def run(self, run: Run) -> Run:
        """The run with its context and what every step said, read or sent redacted."""
        data = run.model_dump(mode="json")
        data["context"] = self.value(data["context"])
        for step in data["steps"]:
            for key in _CONTENT:
                if step.get(key) is not None:
                    step[key] = self.value(step[key])
        return Run.model_validate(data)


# The parts of a step that hold what was said, read or sent, and so may hold personal data.
_CONTENT = ("content", "arguments", "raw_arguments", "result", "result_text", "error")


def _walk_in_place(value: Any, change: Callable[[str, str], str], keep: frozenset[str],
                   key: str = "") -> Any:
    """:func:`_walk`, changing ``value``'s own mappings and lists (in the same order, so
    placeholders are numbered the same)."""
    if isinstance(value, str):
        return change(key, value)
    if isinstance(value, dict):
        for name, item in value.items():
            if name not in keep:
                value[name] = _walk_in_place(item, change, keep, str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            value[index] = _walk_in_place(item, change, keep, key)
    return value


def _walk(value: Any, change: Callable[[str, str], str], keep: frozenset[str],
          key: str = "") -> Any:
    """``value`` with each string changed, told the mapping key it is under (a list's
    items are under the list's key)."""
    if isinstance(value, str):
        return change(key, value)
    if isinstance(value, dict):
        return {name: item if name in keep else _walk(item, change, keep, str(name))
                for name, item in value.items()}
    if isinstance(value, list):
        return [_walk(item, change, keep, key) for item in value]
    return value


def placeholder_pattern(text: str) -> str | None:
    """A regular expression matching ``text`` with each placeholder in it widened to any
    value of its kind (an address at the same domain, any phone or card number, any
    token), anchored at both ends; None when ``text`` holds no placeholder."""
    found: list[tuple[int, int, str]] = []
    for match in re.finditer(rf"{_EMAIL_MARK}\d+@(?P<domain>[A-Za-z0-9.-]+)", text):
        found.append((*match.span(), r"[^@\s]+@" + re.escape(match.group("domain"))))
    for match in re.finditer(rf"{_TOKEN_MARK}\d+", text):
        found.append((*match.span(), r"[A-Za-z0-9._~+/=-]+"))
    for match in _NUMBER.finditer(text):
        if _is_number_placeholder(match.group()) and all(
                match.end() <= s or match.start() >= e for s, e, _ in found):
            found.append((*match.span(), r"\+?\(?[0-9][0-9 ().-]{5,}[0-9]\)?"))
    if not found:
        return None
    pattern, at = "", 0
    for start, end, widened in sorted(found):
        pattern += re.escape(text[at:start]) + widened
        at = end
    return "^" + pattern + re.escape(text[at:]) + "$"

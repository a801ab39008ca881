"""The exact verifier: is a response's final answer the gold answer?

Over 400 lines: every answer-matching rule of the exact verifier (docs/verifier.md) in
one place.

One verdict per response, and every verdict says which rule decided (``how``),
so a disagreement with another labeler can be traced to a rule. The rules,
the fallbacks and the tolerance choice are written up in ``docs/verifier.md``.

1. **Extraction.** The final answer is the content of the last ``\\boxed{...}``
   (or ``\\fbox{...}``), braces balanced, nested braces kept. Without a box:
   for ``kind="number"`` the last number of the text, for ``kind="choice"`` a
   final "answer is (X)" or a last line "X) ...", otherwise nothing. A response
   cut at ``max_tokens`` (``finish_reason == "length"``) has no fallback: its
   last number is a number of the unfinished reasoning, not an answer.
2. **Comparison**, by the gold's kind:

   - ``number``: ``$``, ``\\%``, thousands commas, ``\\text{...}``, ``^\\circ``
     and a trailing unit are stripped, and a leading ``x =`` is dropped;
     integers, decimals, ``a/b``, ``\\frac{a}{b}`` and ``1.2 \\times 10^{-3}``
     are parsed; the answer is right when it is within ``rel_tol`` of the gold,
     relative to the gold. An answer this parser cannot read (``2\\sqrt{2}``)
     is parsed by math-verify and, when it is a closed number, compared with
     the same tolerance; otherwise math-verify decides.
   - ``latex``: math-verify (``parse`` then ``verify``), which knows fractions,
     roots, pi, sets, intervals, tuples, equations and matrices. When both sides
     are plain numbers (no unit, no variable) they are compared with
     ``rel_tol`` instead, because math-verify reads ``1.77e-6`` as
     ``1.77 * e - 6`` and rounds decimals to six places, whatever their scale.
   - ``choice``: the letters A to E, case-insensitively, read from ``B``,
     ``(B)``, ``B) 12``, ``B. 12`` or ``\\text{B}``.

math-verify guards its work with ``signal.alarm``, which only the main thread
may use; off the main thread this module calls it without a timeout, so
``verify`` is safe in worker threads (bound the work there with the worker's
own timeout, for instance the Prefect task's).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Final

from math_verify import parse as _mv_parse  # type: ignore[import-untyped]
from math_verify import verify as _mv_verify

from sentinel_core.errors import InvalidInputError

KINDS: Final = ("number", "latex", "choice")
CHOICE_LETTERS: Final = "ABCDE"

DEFAULT_REL_TOL: Final = 1e-4
"""Relative tolerance for numeric answers: four significant figures."""

DEFAULT_REL_TOL_BY_BENCHMARK: Final[Mapping[str, float]] = MappingProxyType(
    {
        # SciBench's references are rounded to 2-3 significant figures; its
        # evaluation code (equiv, math.isclose(rel_tol=0.05)) accepts 5%.
        "scibench": 0.05,
        # TheoremQA's references are rounded too; its evaluation (within_eps)
        # accepts 4% of the gold, the datasheet chose the stricter 2%.
        "theoremqa": 0.02,
    }
)
"""Tolerances the datasheet used per benchmark; ``verify_record`` passes them
as ``rel_tol``. The comparison itself knows no benchmark."""

MATH_VERIFY_TIMEOUT_S: Final = 5
"""math-verify's own default; used on the main thread only (see module doc)."""

HOW_BOXED: Final = "boxed"
HOW_LAST_NUMBER: Final = "last number (no boxed)"
HOW_ANSWER_IS: Final = "answer is (X) (no boxed)"
HOW_OPTION_LINE: Final = "last line X) (no boxed)"
HOW_CUT: Final = "no answer (cut at max_tokens)"
HOW_NONE: Final = "no answer"


@dataclass(frozen=True)
class Verdict:
    """One response's label: right or not, the answer read, and the rule that decided."""

    correct: bool
    extracted: str | None
    how: str

    def to_dict(self) -> dict[str, Any]:
        """The verdict as a plain dict (``correct``, ``extracted``, ``how``)."""
        return {"correct": self.correct, "extracted": self.extracted, "how": self.how}


# --------------------------------------------------------------------------- extraction

_BOX_RE = re.compile(r"\\(?:boxed|fbox)\b")
_NUMBER_IN_TEXT_RE = re.compile(
    r"-?\\[dt]?frac\{\d+(?:\.\d+)?\}\{\d+(?:\.\d+)?\}"
    r"|-?\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,])"
    r"|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
    r"|-?\.\d+"
)
_ANSWER_IS_RE = re.compile(
    r"(?i:answer|option|choice)\s*(?:is|:)?\s*[:\-]?\s*(?:\*\*)?\s*"
    r"\(?([A-E])\)?(?![A-Za-z])"
)
_LAST_LINE_LETTER_RE = re.compile(r"^\s*\(?([A-E])\)(?:\s|$)")


def _brace_end(text: str, open_at: int) -> int | None:
    """Index just past the brace that closes ``text[open_at] == "{"``; None if unclosed."""
    depth = 0
    i = open_at
    while i < len(text):
        char = text[i]
        if char == "\\":
            i += 2  # an escaped character (\{, \}, \\) never counts as a brace
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    return None


def _last_box(text: str) -> str | None:
    """Content of the last non-empty ``\\boxed{}``/``\\fbox{}``; None if absent or unclosed.

    An unclosed last box (a response cut inside its answer) is no answer: the
    earlier boxes, if any, were not the model's final word.
    """
    for match in reversed(list(_BOX_RE.finditer(text))):
        i = match.end()
        while i < len(text) and text[i].isspace():
            i += 1
        if i < len(text) and text[i] == "{":
            end = _brace_end(text, i)
            if end is None:
                return None
            content = text[i + 1 : end - 1].strip()
        else:  # \boxed 5: the short form takes one token
            token = re.match(r"[^\s$\\]+", text[i:])
            content = token.group(0) if token else ""
        if content:
            return content
    return None


def _fallback_answer(text: str, kind: str) -> tuple[str | None, str]:
    if kind == "number":
        numbers = _NUMBER_IN_TEXT_RE.findall(text)
        if numbers:
            return numbers[-1], HOW_LAST_NUMBER
    elif kind == "choice":
        said = _ANSWER_IS_RE.findall(text)
        if said:
            return said[-1], HOW_ANSWER_IS
        lines = [line for line in text.splitlines() if line.strip()]
        last = _LAST_LINE_LETTER_RE.match(lines[-1]) if lines else None
        if last:
            return last.group(1), HOW_OPTION_LINE
    return None, HOW_NONE


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")


def extract_final_answer(
    text: str, *, kind: str, finish_reason: str | None = None
) -> tuple[str | None, str]:
    """The final answer of a response and the rule that found it.

    Returns ``(answer, how)``: the content of the last ``\\boxed{}`` with how
    ``"boxed"``; without a box, the documented fallback for ``kind`` (see the
    module doc), or ``(None, "no answer (cut at max_tokens)")`` when
    ``finish_reason == "length"``, or ``(None, "no answer")``.
    """
    _check_kind(kind)
    boxed = _last_box(text)
    if boxed is not None:
        return boxed, HOW_BOXED
    if finish_reason == "length":
        return None, HOW_CUT
    return _fallback_answer(text, kind)


# --------------------------------------------------------------------------- numbers

_NUM = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?"
_SCI_RE = re.compile(rf"({_NUM})\s*(?:\\times|\\cdot|\*)\s*10\s*\^\s*\{{?\s*([+-]?\d+)\s*\}}?")
_POW10_RE = re.compile(r"([+-]?)10\s*\^\s*\{?\s*([+-]?\d+)\s*\}?")
_FRAC_RE = re.compile(rf"([+-]?)\s*\\frac\s*\{{\s*({_NUM})\s*\}}\s*\{{\s*({_NUM})\s*\}}")
_SLASH_RE = re.compile(rf"({_NUM})\s*/\s*({_NUM})")
_PLAIN_RE = re.compile(_NUM)
_TEXT_CMD_RE = re.compile(
    r"\\(?:text|textbf|textit|mathrm|mathbf|mbox|operatorname)\s*\{([^{}]*)\}"
)
_DROP_RE = re.compile(
    r"\\\$|\$|\\!|\\,|\\;|\\:|\\ |~|\\left|\\right|\\displaystyle"
    r"|\^\s*\{?\s*\\circ\s*\}?|\\circ|°|\\degree|\\%|%"
)
_THOUSANDS_RE = re.compile(r"(?<=\d)(?:,|\{,\})(?=\d{3}(?!\d))")
# What may follow a number as its unit: words with integer exponents, joined by
# spaces, "/", "·", "*" or "." (m, m/s^2, kg m^{-3}, km / hr). No operator, no
# second number, no LaTeX command: "2 a x + b" or "3 \pi" are not numbers.
_UNIT_WORD = r"[A-Za-zµΩ]+(?:\s*\^\s*(?:\{\s*-?\d+\s*\}|-?\d+))?"
_UNIT_RE = re.compile(rf"(?:{_UNIT_WORD}(?:\s*[/·*.]?\s*{_UNIT_WORD})*)")
_RELATION_RE = re.compile(r"=|\\approx|≈")


def _normalise_number_text(text: str) -> str:
    """Strip what is not part of a number's value: ``$``, ``\\%``, ``\\text{}``, ``^\\circ``..."""
    out = text.replace("\u2212", "-").replace("\u00d7", r"\times ")  # unicode minus, times
    out = out.replace("\\dfrac", "\\frac")
    out = out.replace("\\tfrac", "\\frac")
    previous = None
    while previous != out:
        previous, out = out, _TEXT_CMD_RE.sub(r" \1 ", out)
    out = _THOUSANDS_RE.sub("", _DROP_RE.sub(" ", out))
    if "," not in out:  # "x = 5", "2 + 3 = 5": the value is right of the last relation,
        out = _RELATION_RE.split(out)[-1]  # but "x=10, y=2" is a list, not a number
    return out.strip().rstrip(".").strip()


def _value_of(match: re.Match[str]) -> float:
    groups = match.groups()
    if match.re is _SCI_RE:
        return float(groups[0]) * 10.0 ** int(groups[1])
    if match.re is _POW10_RE:
        return (-1.0 if groups[0] == "-" else 1.0) * 10.0 ** int(groups[1])
    if match.re is _FRAC_RE:
        return (-1.0 if groups[0] == "-" else 1.0) * float(groups[1]) / float(groups[2])
    if match.re is _SLASH_RE:
        return float(groups[0]) / float(groups[1])
    return float(match.group(0))


def parse_number(text: str, *, units: bool = True) -> float | None:
    """The value of a numeric answer such as ``"1,234.5 \\text{ m}"``; None if it is not one.

    Reads integers, decimals, ``1e-3``, ``1.2 \\times 10^{-3}``, ``10^{5}``,
    ``\\frac{a}{b}`` and ``a/b``, after the stripping described in the module
    doc. With ``units`` a trailing unit is allowed (``9.8 m/s^2``); without,
    nothing may follow the number, because in an expression ``2k`` or ``6m``
    is a product, not a quantity. Anything else after the number (``\\pi``,
    ``+ b``, a second number, an imaginary ``i``) makes it not a plain number.
    """
    body = _normalise_number_text(text)
    for pattern in (_SCI_RE, _POW10_RE, _FRAC_RE, _SLASH_RE, _PLAIN_RE):
        match = pattern.match(body)
        if match is None:
            continue
        rest = body[match.end() :].strip()
        if rest == "" or (units and rest != "i" and _UNIT_RE.fullmatch(rest)):
            try:
                value = _value_of(match)
            except (ZeroDivisionError, OverflowError):
                return None
            return value if math.isfinite(value) else None
    return None


def _within(answer: float, gold: float, rel_tol: float) -> bool:
    """Within ``rel_tol`` of the gold, relative to the gold (a gold of 0 needs exactly 0)."""
    return abs(answer - gold) <= rel_tol * abs(gold)


# --------------------------------------------------------------------------- math-verify


def _math_verify_timeout() -> int | None:
    """math-verify's signal timeout on the main thread; None (no signals) elsewhere."""
    if threading.current_thread() is threading.main_thread():
        return MATH_VERIFY_TIMEOUT_S
    return None


def _mv_parse_boxed(expression: str) -> list[Any]:
    # Gold and answer go through the same wrapper, so both are read by the same
    # extraction rules (math-verify looks for boxed content first).
    parsed: list[Any] = _mv_parse(
        "\\boxed{" + expression + "}", parsing_timeout=_math_verify_timeout()
    )
    return parsed


def _mv_equal(gold: list[Any], answer: list[Any]) -> bool:
    return bool(_mv_verify(gold, answer, timeout_seconds=_math_verify_timeout()))


def _mv_number(parsed: list[Any]) -> float | None:
    """The numeric value of math-verify's parse, if it is a closed real number."""
    if not parsed or isinstance(parsed[0], str):
        return None
    expr = parsed[0]
    try:
        if getattr(expr, "free_symbols", {None}):
            return None
        value = complex(expr.evalf())
    except (TypeError, ValueError, AttributeError):
        return None
    if value.imag != 0 or not math.isfinite(value.real):
        return None
    return value.real


# --------------------------------------------------------------------------- comparisons


def _tol_label(rel_tol: float) -> str:
    return f"rel_tol {rel_tol:g}"


def _compare_number(answer: str, gold: str, rel_tol: float) -> tuple[bool, str]:
    gold_value, answer_value = parse_number(gold), parse_number(answer)
    if gold_value is not None and answer_value is not None:
        return _within(answer_value, gold_value, rel_tol), _tol_label(rel_tol)
    gold_parsed, answer_parsed = _mv_parse_boxed(gold), _mv_parse_boxed(answer)
    if gold_value is None:
        gold_value = _mv_number(gold_parsed)
    if answer_value is None:
        answer_value = _mv_number(answer_parsed)
    if gold_value is not None and answer_value is not None:
        return _within(
            answer_value, gold_value, rel_tol
        ), f"math-verify parse, {_tol_label(rel_tol)}"
    return _compare_math_verify(gold_parsed, answer_parsed)


def _compare_math_verify(gold: list[Any], answer: list[Any]) -> tuple[bool, str]:
    if not gold or not answer:
        return False, "math-verify (not parsed)"
    return _mv_equal(gold, answer), "math-verify"


def _compare_latex(answer: str, gold: str, rel_tol: float) -> tuple[bool, str]:
    gold_value = parse_number(gold, units=False)
    answer_value = parse_number(answer, units=False)
    if gold_value is not None and answer_value is not None:
        return _within(answer_value, gold_value, rel_tol), _tol_label(rel_tol)
    return _compare_math_verify(_mv_parse_boxed(gold), _mv_parse_boxed(answer))


_LETTER_RE = re.compile(
    r"(?:(?:option|choice|answer)\s*:?\s*)?\(?\s*([A-Ea-e])\s*\)?(?=$|[\s.:,)\]])",
    re.IGNORECASE,
)


def choice_letter(answer: str) -> str | None:
    """The option letter an answer names (``B``, ``(b)``, ``B) 12``, ``\\text{B}``); else None."""
    body = _TEXT_CMD_RE.sub(r"\1", answer.replace("$", "")).strip().strip("{}").strip()
    match = _LETTER_RE.match(body)
    if match is None:
        return None
    rest = body[match.end() :]
    # "E = mc^2" starts with a letter but names no option
    if rest.strip().startswith(("=", "+", "-", "^", "_")):
        return None
    return match.group(1).upper()


def _compare_choice(answer: str, gold_letter: str) -> tuple[bool, str]:
    letter = choice_letter(answer)
    if letter is None:
        return False, "not a choice letter"
    return letter == gold_letter, "choice letter"


# --------------------------------------------------------------------------- public entry points


def _check_rel_tol(rel_tol: float | None) -> float:
    if rel_tol is None:
        return DEFAULT_REL_TOL
    if not math.isfinite(rel_tol) or rel_tol < 0:
        raise InvalidInputError(f"rel_tol must be a finite number >= 0, got {rel_tol!r}")
    return rel_tol


def verify(
    response_text: str,
    gold: str,
    kind: str,
    *,
    finish_reason: str | None = None,
    rel_tol: float | None = None,
) -> Verdict:
    """Label one response against its gold answer.

    ``kind`` is the gold's kind: ``"number"``, ``"latex"`` or ``"choice"``.
    ``rel_tol`` is the relative tolerance for numeric comparisons (default
    ``DEFAULT_REL_TOL``; see ``DEFAULT_REL_TOL_BY_BENCHMARK``). A response with
    no answer is incorrect. Raises ``InvalidInputError`` for an unknown kind, a
    negative or non-finite tolerance, an empty gold or a choice gold that is
    not a letter.
    """
    _check_kind(kind)
    tol = _check_rel_tol(rel_tol)
    if not gold.strip():
        raise InvalidInputError(f"gold must be a non-empty answer, got {gold!r}")
    gold_letter = choice_letter(gold) if kind == "choice" else None
    if kind == "choice" and gold_letter is None:
        raise InvalidInputError(
            f"a choice gold must be one letter {', '.join(CHOICE_LETTERS)}, got {gold!r}"
        )
    answer, found_by = extract_final_answer(response_text, kind=kind, finish_reason=finish_reason)
    if answer is None:
        return Verdict(correct=False, extracted=None, how=found_by)
    if kind == "number":
        correct, rule = _compare_number(answer, gold, tol)
    elif kind == "latex":
        correct, rule = _compare_latex(answer, gold, tol)
    else:
        correct, rule = _compare_choice(answer, str(gold_letter))
    return Verdict(correct=correct, extracted=answer, how=f"{found_by}, {rule}")


def _field(record: Mapping[str, Any], *path: str) -> Any:
    value: Any = record
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise InvalidInputError(
                f"a corpus record needs {'.'.join(path)}, but {key!r} is missing "
                f"(record id {record.get('id')!r})"
            )
        value = value[key]
    return value


def verify_record(record: Mapping[str, Any]) -> Verdict:
    """Label a corpus-style record (``corpus-dev.jsonl``).

    Reads ``metadata.gold``, ``metadata.kind``, ``metadata.benchmark``,
    ``response_text`` and ``finish_reason``; the tolerance is the benchmark's
    entry in ``DEFAULT_REL_TOL_BY_BENCHMARK``, else ``DEFAULT_REL_TOL``.
    """
    benchmark = _field(record, "metadata", "benchmark")
    return verify(
        str(_field(record, "response_text")),
        str(_field(record, "metadata", "gold")),
        str(_field(record, "metadata", "kind")),
        finish_reason=record.get("finish_reason"),
        rel_tol=DEFAULT_REL_TOL_BY_BENCHMARK.get(str(benchmark)),
    )

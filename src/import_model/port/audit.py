"""``import-model audit``: donor names and donor claims left in a port, each classified OK, Lie or Stale.

The seed's grep list (qwen|llama|mistral|...|single-GPU|RMSNorm|QK-norm) plus
MAX's copyright banner is searched in every line of the port's ``*.py``. Hits
in code (imports, names, strings) are lineage by construction and OK. Hits in
docstrings and comments are classified with the tables below:

- **OK**: the port's own family; a sentence that states lineage (``the llama3
  donor``, ``copied from``, ``subclasses``); an open delta (``TODO(delta ...)``);
  a negated claim (``does not yet ... QK-norm``); a claim the file's code backs;
  the attribution line a scaffold writes.
- **Lie**: a behaviour claim (RMSNorm, QK-norm, single-/multi-GPU) the file's
  code does not have.
- **Stale**: words that describe the donor, not this port (``Llama 3 model``
  in a port of another family), and the donor's copyright banner left verbatim.

Exit 1 while any Lie or Stale remains; a clean audit prints the seed's attestation.
"""

from __future__ import annotations

import ast
import bisect
import io
import re
import tokenize
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

from import_model.port.native_copy import registered_names, stem_of
from import_model.safe_io import MAX_PORT_FILE_BYTES, read_bounded_text

OK, LIE, STALE = "OK", "Lie", "Stale"

#: Model families of the seed's grep list (matched at the start of a word, any case).
FAMILIES = ("qwen", "llama", "mistral", "mixtral", "cohere", "gemma", "phi", "deepseek", "exaone", "olmo",
            "granite")


@dataclass(frozen=True)
class Claim:
    """A behaviour a docstring may claim, and the code that backs the claim in the same file."""

    name: str
    pattern: str
    evidence: str


#: Claims of the seed's grep list; a claim without its evidence in the file's code is a Lie.
CLAIMS: tuple[Claim, ...] = (
    Claim("RMSNorm", r"rms[ _-]?norm", r"RMSNorm|rms_norm"),
    Claim("QK-norm", r"qk[ _-]?norm|query[ -]key norm", r"q_norm|k_norm|qk_norm|QKNorm|qk_layernorm"),
    Claim("single-GPU", r"single[ -]GPU|one GPU", r"multi_gpu_supported\s*=\s*False|len\([^)]*devices\)\s*==\s*1"),
    Claim("multi-GPU", r"multi[ -]GPU|tensor[ -]parallel",
          r"multi_gpu_supported\s*=\s*True|Distributed[A-Z]\w*|len\([^)]*devices\)\s*>\s*1"),
)
#: MAX's copyright banner, as the donor's files carry it.
BANNER = re.compile(r"Copyright \(c\) \d{4},? Modular Inc", re.I)
#: The attribution a scaffold keeps in place of the banner (the license notice survives).
ATTRIBUTION = re.compile(r"Derived from Modular MAX's \w+ architecture", re.I)
#: Words that make a sentence about the donor a statement of lineage rather than a description of the port.
LINEAGE = re.compile(r"\bdonor\b|derived from|copied from|\bsubclass|\binherit|\blineage\b|\bupstream\b|"
                     r"\bimported from\b|\breuse|\bborrow", re.I)
#: Words that turn a behaviour claim into what the port does not (yet) do.
NEGATION = re.compile(r"\b(not|no|never|without|instead of|yet|lacks?|remove|drop|todo|missing)\b", re.I)
OPEN_DELTA = re.compile(r"TODO\(delta\b")
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z`(\"'])|\n\s*\n")


@dataclass(frozen=True)
class Hit:
    file: str
    line: int
    verdict: str
    match: str
    reason: str
    kind: str  # docstring | comment | code
    text: str


@dataclass
class AuditResult:
    port_dir: Path
    files: list[str]
    hits: list[Hit] = field(default_factory=list)

    @property
    def failures(self) -> list[Hit]:
        return [h for h in self.hits if h.verdict != OK]

    def counts(self) -> dict[str, int]:
        return dict(Counter(h.verdict for h in self.hits))

    def as_dict(self) -> dict[str, object]:
        return {"port_dir": str(self.port_dir), "files": self.files, "hits": [asdict(h) for h in self.hits],
                "counts": self.counts(), "passed": not self.failures,
                "attestation": attestation(self) if not self.failures else None}


def attestation(result: AuditResult) -> str:
    return (f"docstrings rewritten to the three-sentence pattern; audit finds {len(result.hits)} hits, "
            "all legitimate lineage references")


@dataclass(frozen=True)
class _Unit:
    """A docstring, a comment block or a code line: where it starts and its text."""

    kind: str
    line: int
    text: str


def audit_port(port_dir: Path) -> AuditResult:
    files = sorted(p for p in port_dir.glob("*.py") if not p.is_dir())  # a FIFO or device is refused when read
    result = AuditResult(port_dir, [p.name for p in files])
    own = own_families(port_dir)
    for path in files:
        result.hits.extend(audit_file(path, own))
    return result


def own_families(port_dir: Path) -> set[str]:
    """Lower-case names that are the port's own model (its registered class stems and its slug)."""
    names = {port_dir.name.lower()}
    names.update(stem_of(name).lower() for name in registered_names(port_dir))
    return names


def audit_file(path: Path, own: set[str]) -> list[Hit]:
    text = read_bounded_text(path, MAX_PORT_FILE_BYTES, "port file", errors="replace")
    units, code = _units(text)
    evidence = _Evidence(code)
    hits: list[Hit] = []
    for unit in units:
        hits.extend(_classify_unit(path.name, unit, evidence, own))
    return sorted(hits, key=lambda h: h.line)


def _units(text: str) -> tuple[list[_Unit], str]:
    """Docstrings, comment blocks and code lines of a module, and its code without words."""
    lines = text.split("\n")
    covered: set[int] = set()
    units: list[_Unit] = []
    for start, end, value in _strings(text):
        units.append(_Unit("docstring", start, value))
        covered |= set(range(start, end + 1))
    comments = _comments(text)
    for line, _col, _body in comments:
        if not lines[line - 1][:_col].strip():
            covered.add(line)
    units.extend(_comment_units(comments, lines))
    cut = {line: col for line, col, _ in comments}
    code_lines = []
    for number, raw in enumerate(lines, 1):
        if number in covered:
            continue
        code_line = raw[: cut[number]] if number in cut else raw
        code_lines.append(code_line)
        if code_line.strip():
            units.append(_Unit("code", number, code_line))
    return units, "\n".join(code_lines)


def _strings(text: str) -> Iterator[tuple[int, int, str]]:
    try:
        tree = ast.parse(text)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return
    for node in ast.walk(tree):
        for stmt in getattr(node, "body", []) if isinstance(getattr(node, "body", None), list) else []:
            if isinstance(stmt, ast.Expr) and isinstance(stmt.value, ast.Constant) and \
                    isinstance(stmt.value.value, str):
                yield stmt.lineno, stmt.end_lineno or stmt.lineno, stmt.value.value


def _comments(text: str) -> list[tuple[int, int, str]]:
    try:
        tokens = list(tokenize.generate_tokens(io.StringIO(text).readline))
    except (tokenize.TokenError, SyntaxError, RecursionError):
        return []
    return [(t.start[0], t.start[1], t.string.lstrip("#").strip()) for t in tokens if t.type == tokenize.COMMENT]


def _comment_units(comments: list[tuple[int, int, str]], lines: list[str]) -> list[_Unit]:
    """Consecutive full-line comments form one block; a TODO starts a new one; trailing comments stand alone."""
    units: list[_Unit] = []
    block: list[tuple[int, str]] = []
    for line, col, body in comments:
        trailing = bool(lines[line - 1][:col].strip())
        continues = block and not trailing and line == block[-1][0] + 1 and not body.startswith("TODO")
        if block and not continues:
            units.append(_Unit("comment", block[0][0], "\n".join(b for _, b in block)))
            block = []
        if trailing:
            units.append(_Unit("comment", line, body))
        else:
            block.append((line, body))
    if block:
        units.append(_Unit("comment", block[0][0], "\n".join(b for _, b in block)))
    return units


def _family_pattern() -> re.Pattern[str]:
    return re.compile(r"(?<![A-Za-z0-9_])(" + "|".join(FAMILIES) + r")[A-Za-z0-9_.-]*", re.I)


_FAMILY = _family_pattern()
#: The family name with its version (Gemma2, Phi3, deepseekV3): what tells one family member from another.
_FAMILY_WORD = re.compile(r"(" + "|".join(FAMILIES) + r")(v?\d+(?:\.\d+)?)?", re.I)
_CLAIM_PATTERNS = [(claim, re.compile(claim.pattern, re.I)) for claim in CLAIMS]


class _UnitText:
    """One unit's text with its line breaks and sentence breaks found once.

    Every hit looks up its line, sentence and excerpt by bisection here, so a
    unit with many hits (a long comment block naming the donor on every line)
    costs time in proportion to its length, not to its length times its hits.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.newlines = [i for i, char in enumerate(text) if char == "\n"]
        breaks = list(_SENTENCE.finditer(text))
        self.break_starts = [m.start() for m in breaks]
        self.break_ends = [m.end() for m in breaks]
        self.open_delta = bool(OPEN_DELTA.search(text))
        self._sentences: dict[int, tuple[bool, bool]] = {}

    def line_offset(self, at: int) -> int:
        """How many lines into the unit ``at`` is."""
        return bisect.bisect_left(self.newlines, at)

    def sentence_index(self, at: int) -> int:
        """The sentence holding ``at``: it ends at the first break starting at or after ``at``."""
        return bisect.bisect_left(self.break_starts, at)

    def sentence(self, index: int) -> str:
        start = self.break_ends[index - 1] if index else 0
        end = self.break_starts[index] if index < len(self.break_starts) else len(self.text)
        return self.text[start:end]

    def lineage_and_negation(self, index: int) -> tuple[bool, bool]:
        """Whether sentence ``index`` states lineage and whether it negates (each searched once)."""
        if index not in self._sentences:
            sentence = self.sentence(index)
            self._sentences[index] = (bool(LINEAGE.search(sentence)), bool(NEGATION.search(sentence)))
        return self._sentences[index]

    def excerpt(self, start: int, width: int = 90) -> str:
        """The stripped line holding ``start``, cut to ``width``."""
        k = bisect.bisect_left(self.newlines, start)
        line_start = self.newlines[k - 1] + 1 if k else 0
        line_end = self.newlines[k] if k < len(self.newlines) else len(self.text)
        line = self.text[line_start:line_end].strip()
        return line if len(line) <= width else line[: width - 3] + "..."


class _Evidence:
    """Whether the file's code backs each claim, searched once per claim per file."""

    def __init__(self, code: str) -> None:
        self.code = code
        self._found: dict[str, bool] = {}

    def has(self, claim: Claim) -> bool:
        if claim.name not in self._found:
            self._found[claim.name] = bool(re.search(claim.evidence, self.code))
        return self._found[claim.name]


def _classify_unit(file: str, unit: _Unit, evidence: _Evidence, own: set[str]) -> Iterator[Hit]:
    text = _UnitText(unit.text)
    for start, _end, what, claim in _matches(unit.text):
        line = unit.line + text.line_offset(start)
        excerpt = text.excerpt(start)
        if unit.kind == "code":
            reason = "import line" if unit.text.lstrip().startswith(("import ", "from ")) else "code reference"
            yield Hit(file, line, OK, what, reason, unit.kind, excerpt)
            continue
        verdict, reason = _verdict(text, start, what, claim, evidence, own)
        yield Hit(file, line, verdict, what, reason, unit.kind, excerpt)


def _matches(text: str) -> Iterator[tuple[int, int, str, Claim | None]]:
    for match in BANNER.finditer(text):
        yield match.start(), match.end(), "copyright banner", None
    for match in _FAMILY.finditer(text):
        yield match.start(), match.end(), match.group(0).rstrip(".-"), None
    for claim, pattern in _CLAIM_PATTERNS:
        for match in pattern.finditer(text):
            yield match.start(), match.end(), match.group(0), claim


def _verdict(text: _UnitText, at: int, what: str, claim: Claim | None, evidence: _Evidence,
             own: set[str]) -> tuple[str, str]:
    if text.open_delta:
        return OK, "open delta (TODO)"
    if what == "copyright banner":
        if ATTRIBUTION.search(text.text):
            return OK, "attribution of the donor's license"
        return STALE, "the donor's file banner: replace it with the attribution line"
    lineage, negated = text.lineage_and_negation(text.sentence_index(at))
    if lineage:
        return OK, "lineage: names the donor"
    if claim is not None:
        if negated:
            return OK, f"says the port does not (yet) have {claim.name}"
        if evidence.has(claim):
            return OK, f"the code has {claim.name}"
        return LIE, f"claims {claim.name}, which this file's code does not have"
    word = _FAMILY_WORD.match(what)
    if word and _is_own(word.group(0).lower(), own):
        return OK, "the port's own model"
    return STALE, "describes the donor, not this port"


def _is_own(word: str, own: set[str]) -> bool:
    return any(word == name or name.startswith(word) for name in own)

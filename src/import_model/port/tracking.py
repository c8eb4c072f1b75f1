"""PORT.md: the tracking document beside a port, with generated sections the user's notes survive.

The document follows the seed's template: guard (native check), model card
notes, config table, delta list, scaffold files, gates and validation tier.
Each generated section sits between two markers::

    <!-- import-model:section deltas -->
    ...generated Markdown...
    <!-- /import-model:section -->

:func:`update_sections` rewrites what is between the markers of the named
sections and nothing else, so headings, notes and ticks written outside them
survive a second ``scaffold --force``. A section whose markers were deleted or
damaged is refused with one line that says how to repair it; the file is
written atomically.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from import_model.cache import atomic_write
from import_model.errors import UserError
from import_model.plan.donors import Delta
from import_model.safe_io import MAX_DOCUMENT_BYTES, read_bounded_text

#: The template's sections, in document order: (marker name, heading).
SECTIONS: tuple[tuple[str, str], ...] = (
    ("guard", "Guard: is the architecture already registered in MAX?"),
    ("model-card", "Model card notes"),
    ("config", "Config keys -> MAX"),
    ("deltas", "Delta list"),
    ("scaffold", "Scaffold files"),
    ("gates", "Gates"),
    ("validation", "Validation tier"),
)
SECTION_NAMES = tuple(name for name, _ in SECTIONS)

OPEN = "<!-- import-model:section {name} -->"
CLOSE = "<!-- /import-model:section -->"
_OPEN_RE = re.compile(r"^<!-- import-model:section ([a-z][a-z0-9-]*) -->$")
_CLOSE_RE = re.compile(r"^<!-- /import-model:section -->$")
_LOOSE_RE = re.compile(r"<!--.*import-model:section|import-model:section.*-->")

#: What a section says before any command has filled it in.
PLACEHOLDERS: dict[str, str] = {
    "gates": "\n".join([
        "Not run yet. Before the first serve, the four local checks:",
        "",
        "- [ ] import smoke (the package imports and registers its class)",
        "- [ ] graph dry-build",
        "- [ ] adapter <-> graph key diff",
        "- [ ] weights-format preflight",
        "",
        "Then `import-model gates MODEL --port-dir DIR/<slug>` and `import-model audit DIR/<slug>`.",
    ]),
    "validation": "Not chosen yet: pick a tier from 1 (smoke) to 6 (logit parity) during planning.",
}


@dataclass(frozen=True)
class _Span:
    """Line indexes of one section's markers (content is strictly between them)."""

    name: str
    open_line: int
    close_line: int


class TrackingError(UserError):
    """PORT.md cannot be updated without touching what the user wrote."""


def render_document(title: str, sections: dict[str, str]) -> str:
    """A new tracking document: every template section, filled from ``sections`` or a placeholder."""
    lines = [f"# {title}", "",
             "Tracking document for this port. The sections between import-model's HTML comment markers are",
             "rewritten by `import-model scaffold`; write your own notes outside them and they are kept.", ""]
    for name, heading in SECTIONS:
        body = sections.get(name, PLACEHOLDERS.get(name, "Not filled in yet."))
        lines += [f"## {heading}", "", OPEN.format(name=name), _checked(name, body).rstrip("\n"), CLOSE, ""]
    return "\n".join(lines)


def update_text(text: str, sections: dict[str, str], origin: str = "PORT.md") -> str:
    """``text`` with the named sections' content replaced; everything outside their markers is kept."""
    lines = text.split("\n")
    spans = {span.name: span for span in _spans(lines, origin)}
    missing = [name for name in sections if name not in spans]
    if missing:
        raise TrackingError(f"{origin}: refusing to update: the markers of section {missing[0]!r} are missing "
                            f"(deleted?); put back `{OPEN.format(name=missing[0])}` ... `{CLOSE}` "
                            "or move the file away to regenerate it")
    for span in sorted((spans[name] for name in sections), key=lambda s: s.open_line, reverse=True):
        body = _checked(span.name, sections[span.name]).rstrip("\n").split("\n")
        lines[span.open_line + 1: span.close_line] = body
    return "\n".join(lines)


def update_sections(path: Path, sections: dict[str, str]) -> None:
    """Replace only the marked ``sections`` of the document at ``path``, atomically."""
    text = read_document(path)
    atomic_write(path, update_text(text, sections, str(path)).encode())


def planned_text(path: Path, title: str, sections: dict[str, str]) -> str:
    """What ``path`` will hold after :func:`write_tracking` (raises before anything is written)."""
    if path.is_symlink():
        raise TrackingError(f"{path} is a symbolic link; refusing to write through it")
    if not path.exists():
        return render_document(title, sections)
    text = read_document(path)
    first = next((line for line in text.split("\n") if line.startswith("# ")), None)
    if first is not None and first != f"# {title}":
        raise TrackingError(f"{path} tracks another port ({first[2:][:80]!r}); give each port its own --output-dir")
    return update_text(text, sections, str(path))


def read_document(path: Path) -> str:
    """An existing tracking document, bounded: a device, a FIFO or a huge file is refused with one line."""
    return read_bounded_text(path, MAX_DOCUMENT_BYTES, "tracking document")


def write_tracking(path: Path, title: str, sections: dict[str, str]) -> None:
    """Create the document, or update its generated sections in place."""
    atomic_write(path, planned_text(path, title, sections).encode())


def _checked(name: str, body: str) -> str:
    if name not in SECTION_NAMES:
        raise ValueError(f"unknown tracking section {name!r}")
    if _LOOSE_RE.search(body):
        raise ValueError(f"section {name!r} content must not contain section markers")
    return body


def _spans(lines: list[str], origin: str) -> list[_Span]:
    """Every well-formed section; any damaged or unbalanced marker is refused with its line number."""
    spans: list[_Span] = []
    current: tuple[str, int] | None = None
    for index, raw in enumerate(lines):
        line = raw.strip()
        if not _LOOSE_RE.search(line):
            continue
        opened, closed = _OPEN_RE.match(line), _CLOSE_RE.match(line)
        problem = None
        if not opened and not closed:
            problem = f"line {index + 1} holds a damaged marker {line[:80]!r}"
        elif opened and current is not None:
            problem = f"section {current[0]!r} (line {current[1] + 1}) is not closed before line {index + 1}"
        elif closed and current is None:
            problem = f"line {index + 1} closes a section that was never opened"
        elif opened and any(span.name == opened.group(1) for span in spans):
            problem = f"section {opened.group(1)!r} appears twice (line {index + 1})"
        if problem:
            raise TrackingError(f"{origin}: refusing to update: {problem}; repair the markers "
                                f"(`{OPEN.format(name='NAME')}` ... `{CLOSE}`) or move the file away to regenerate it")
        if opened:
            current = (opened.group(1), index)
        elif current is not None:
            spans.append(_Span(current[0], current[1], index))
            current = None
    if current is not None:
        raise TrackingError(f"{origin}: refusing to update: section {current[0]!r} (line {current[1] + 1}) is never "
                            f"closed; add `{CLOSE}` after it or move the file away to regenerate it")
    return spans


# --------------------------------------------------------------------------- generated sections


def _cell(value: object) -> str:
    text = "-" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:200]


def md_table(columns: list[str], rows: Iterable[Iterable[object]]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def plan_sections(plan: object, config: dict, card_text: str | None) -> dict[str, str]:
    """The guard, model-card, config and delta sections, from the plan and the model's files."""
    from import_model.recon.card import scan_card
    from import_model.recon.config_map import map_config

    architecture = getattr(plan, "architecture", None)
    guard = (f"`architectures[0]` is `{architecture}`. The installed MAX does not register it natively "
             f"(`import-model list-archs --match {architecture}` exits 1): a port is needed.")
    card = "No README.md in the model repo: read the paper or blog post by hand."
    if card_text:
        notes = scan_card(card_text)
        card_lines = [f"- family claims: {', '.join(notes.families) or 'none found'}"]
        card_lines += [f"- base model: {b}" for b in notes.base_models]
        card_lines += [f"- {link.kind}: {link.url}" for link in notes.links]
        card_lines += [f"- [{tag}] {sentence}" for tag, sentences in notes.tricks.items() for sentence in sentences]
        card = "\n".join(card_lines)
    rows = [(f"`{r.key}`", r.value, r.role, r.max_field or "-", r.note) for r in map_config(config)]
    return {"guard": guard, "model-card": card, "config": md_table(["key", "value", "role", "MAX field", "note"], rows),
            "deltas": _delta_section(plan)}


def _delta_section(plan: object) -> str:
    chosen = getattr(plan, "chosen", None)
    deltas: list[Delta] = list(getattr(plan, "deltas", []))
    if chosen is None:
        return "No donor could be compared."
    lines = [f"Against `{chosen.donor.slug}` ({getattr(plan, 'verdict', '')}); tick a row when its TODO is "
             "implemented and verified.", ""]
    lines.append(md_table(["#", "rule", "component", "HF behaviour", "donor behaviour", "change needed", "done"],
                          [(i, d.rule, d.component, d.hf, d.donor, d.change, "[ ]") for i, d in enumerate(deltas, 1)]))
    default = getattr(plan, "default", None)
    if default is not None:
        lines += ["", f"Default plan: {default.paragraph}"]
    return "\n".join(lines)

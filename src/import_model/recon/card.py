"""Read a model card (the repo's README.md) for what its authors say about the model.

Three things come out: which known families the card claims descent from, the
paper/code/blog links worth reading, and the sentences that announce an
architecture trick. The knowledge is data (:data:`FAMILIES`,
:data:`TRICK_PATTERNS`, :data:`CLAIM_PHRASES`); the functions only walk it.

Cards are written by strangers, so the text is capped before anything looks
at it, every regex is free of nested unbounded repetition (their worst case is
linear in the capped input), and every output list has a cap.
"""

from __future__ import annotations

import re
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from urllib.parse import urlsplit

#: Characters of the card we look at; longer cards are cut and flagged ``truncated``.
MAX_CARD_CHARS = 200_000
#: The YAML front matter must close within this many characters.
MAX_FRONT_MATTER_CHARS = 64_000
#: Characters of one sentence the patterns see (longer runs are cut into pieces).
MATCH_WINDOW = 2_000
#: Sentences we test at all; a card with more is hostile or generated.
MAX_SENTENCES = 20_000
#: Shortest text worth calling a sentence.
MIN_SENTENCE_CHARS = 16
#: Reported sentence excerpts are at most this long.
EXCERPT_CHARS = 240
MAX_SENTENCES_PER_TAG = 5
MAX_LINKS = 40
MAX_FRONT_ITEMS = 64
MAX_FRONT_VALUE_CHARS = 200
#: How far after "based on" (and similar) a family name may appear.
CLAIM_REACH = 120
#: Claim phrases we follow up at all; a real card has a handful.
MAX_CLAIM_PHRASES = 200


@dataclass(frozen=True)
class FamilyClaim:
    """A known family the card says the model comes from, and where it says so."""

    family: str
    #: ``"base_model"`` or ``"tags"`` (YAML front matter), or ``"text"`` (the card body).
    source: str
    evidence: str


@dataclass(frozen=True)
class CardLink:
    """A link worth reading: ``kind`` is ``"paper"``, ``"code"`` or ``"blog"``."""

    kind: str
    url: str


@dataclass(frozen=True)
class CardNotes:
    """What :func:`scan_card` found; empty everywhere for an empty card."""

    family_claims: tuple[FamilyClaim, ...] = ()
    base_models: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    library_name: str | None = None
    license: str | None = None
    links: tuple[CardLink, ...] = ()
    #: Trick tag -> the sentences (trimmed excerpts) that announce it, in card order.
    tricks: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))
    truncated: bool = False

    @property
    def families(self) -> tuple[str, ...]:
        """The claimed family names, without repeats, in the order they were found."""
        return tuple(dict.fromkeys(claim.family for claim in self.family_claims))


# --------------------------------------------------------------------------- knowledge tables

#: Canonical family name -> regex for its name in text (case-insensitive). More specific names come first.
FAMILIES: tuple[tuple[str, str], ...] = (
    ("OLMoE", r"olmoe"),
    ("OLMo", r"olmo(?!e)"),
    ("Mixtral", r"mixtral"),
    ("Mistral", r"mistral"),
    ("RecurrentGemma", r"recurrent[-_ ]?gemma"),
    ("Gemma", r"(?:code)?gemma"),
    ("Llama", r"(?:code|tiny|open)?llama(?!\.cpp|[-_ ]?factory|[-_ ]?index)"),
    ("Qwen", r"qwen"),
    ("Phi", r"phi(?:[-_ ]?\d|[-_ ](?:mini|small|medium)\b)"),
    ("GPT-NeoX", r"gpt[-_ ]?neo[-_ ]?x|pythia"),
    ("GPT-J", r"gpt[-_ ]?j(?![a-z])"),
    ("GPT-OSS", r"gpt[-_ ]?oss"),
    ("GPT-2", r"gpt[-_ ]?2(?![0-9])"),
    ("Falcon", r"falcon"),
    ("DeepSeek", r"deep[-_ ]?seek"),
    ("Cohere", r"cohere|command[-_ ]?r(?![a-z])|c4ai|aya(?![a-z])"),
    ("StarCoder", r"star[-_ ]?coder"),
    ("GLM", r"(?:chat)?glm(?![a-z])"),
    ("EXAONE", r"exaone"),
    ("SmolLM", r"smol[-_ ]?lm"),
    ("Helium", r"helium"),
    ("Granite", r"granite"),
    ("MPT", r"mpt(?![a-z])"),
    ("BLOOM", r"bloomz?(?![a-z])"),
    ("Jamba", r"jamba"),
    ("Mamba", r"mamba"),
    ("InternLM", r"intern[-_ ]?lm"),
    ("Baichuan", r"baichuan"),
    ("StableLM", r"stable[-_ ]?lm"),
    ("Nemotron", r"nemotron"),
    ("MiniCPM", r"mini[-_ ]?cpm"),
    ("Yi", r"yi-(?:\d|large|lightning|coder)"),
)

#: Phrases that introduce a claim of descent ("fine-tuned from X").
CLAIM_PHRASES = (
    r"based on", r"built (?:on|upon|from)", r"fine[- ]?tun(?:ed|ing) (?:from|of)", r"a fine[- ]?tune of",
    r"version of", r"variant of", r"derived from", r"initiali[sz]ed (?:from|with)", r"distilled from",
    r"continued pre-?training (?:of|from|on)", r"merge of", r"merged from", r"adapted from", r"on top of",
    r"same architecture as", r"architecture (?:of|as)", r"trained from",
)

#: Trick tag -> regexes (case-insensitive) for sentences that announce it.
TRICK_PATTERNS: Mapping[str, tuple[str, ...]] = MappingProxyType({
    "qk-norm": (r"\bqk[-_ ]?(?:layer[-_ ]?)?norm", r"\bquery[-/ ]key norm", r"\bquery and key norm",
                r"\bnormali[sz]\w{0,5} (?:the )?quer(?:y|ies) and keys?\b"),
    "mla": (r"\bmulti[- ]head latent attention\b", r"\bMLA\b", r"\blatent attention\b"),
    "sliding-window": (r"\bsliding[- ]window", r"\blocal[- ](?:attention|window)", r"\bSWA\b",
                       r"\binterleav\w{0,4} (?:local|global|sliding)"),
    "moe-routing": (r"\bmixture[- ]of[- ]experts?\b", r"\bMoE\b", r"\b(?:routed|shared|active) experts?\b",
                    r"\btop-?\d (?:expert|routing|gating)", r"\bexpert routing\b", r"\brouter\b",
                    r"\bactive param(?:eter)?s?\b"),
    "custom-kernels": (r"\b(?:custom|fused|hand[- ]written|triton|cuda) kernels?\b",),
    "remote-code": (r"\btrust_remote_code\b", r"\bcustom (?:modeling )?code\b"),
    "fp8-only": (r"\bfp8\b", r"\bfloat8\b", r"\be4m3\b", r"\be5m2\b", r"\b8-bit floating"),
    "fp4": (r"\b(?:mx|nv)?fp4\b", r"\b4-bit floating"),
    "alibi": (r"\balibi\b", r"\battention with linear biases\b"),
    "state-space": (r"\bstate[- ]space\b", r"\bmamba-?\d?\b", r"\bSSMs?\b", r"\brecurren(?:t|ce)\b", r"\brwkv\b",
                    r"\bxlstm\b"),
    "linear-attention": (r"\blinear attention\b", r"\blightning attention\b", r"\bdelta ?net\b",
                         r"\bgated delta\b"),
    "we-introduce": (r"\bwe (?:introduce|propose|present)\b", r"\bintroduc(?:es|ing) (?:a )?(?:new|novel)\b"),
    "unlike-prior": (r"\bunlike (?:prior|previous|other|existing|standard|traditional|conventional|most)\b",
                     r"\bin contrast to (?:prior|previous|standard|conventional)\b"),
    "first-model": (r"\bfirst (?:[\w-]{1,30} ){0,3}(?:model|llm|language model)s? (?:to|that|with)\b",),
    "partial-rotary": (r"\bpartial (?:rotary|rope)\b", r"\bpartial_rotary_factor\b", r"\brotary_pct\b",
                       r"\b(?:rotary|rope)\b[^.]{0,40}\b(?:a fraction|\d{1,3} ?%|half|a quarter) of (?:the )?"
                       r"(?:head|dimension|channel)"),
    "softcapping": (r"\bsoft[- ]?capp?(?:ing|ed)?\b", r"\bsoftcap", r"\blogit capping\b"),
    "parallel-residual": (r"\bparallel (?:residual|attention|block|layer|transformer block)s?\b",
                          r"\b(?:attention|mlp|ffn)\b[^.]{0,40}\bin parallel\b"),
    "tied-embeddings": (r"\btied (?:input[- ]output |word |input and output |input/output )?embeddings?\b",
                        r"\bweight tying\b", r"\btie[sd]? (?:the )?(?:input|word|output) (?:and output )?embeddings?\b",
                        r"\bembeddings? (?:are|is) (?:tied|shared)\b",
                        r"\bshar(?:e|ed|ing) (?:the )?(?:input and output |input/output )?embeddings?\b"),
    "novel-attention": (r"\bnovel attention\b", r"\bdifferential attention\b", r"\battention sinks?\b",
                        r"\bnew attention (?:mechanism|variant|layer)\b", r"\bchunked attention\b",
                        r"\b(?:our|a) (?:new|novel|modified|custom) (?:[\w-]{1,30} )?attention\b"),
    "rope-scaling": (r"\byarn\b", r"\brope[ _]scaling\b", r"\bntk[- ]aware\b", r"\blongrope\b",
                     r"\bposition interpolation\b"),
    "non-causal": (r"\bbidirectional attention\b", r"\bprefix[- ]lm\b", r"\bnon[- ]causal\b"),
    "encoder-decoder": (r"\bencoder[- ]decoder\b",),
    "multi-token-prediction": (r"\bmulti[- ]token prediction\b", r"\bMTP\b"),
})

PAPER_HOSTS = ("arxiv.org", "openreview.net", "aclanthology.org", "papers.nips.cc", "proceedings.neurips.cc",
               "proceedings.mlr.press", "doi.org", "dl.acm.org", "semanticscholar.org", "ar5iv.org")
CODE_HOSTS = ("github.com", "gitlab.com")
BLOG_HOSTS = ("medium.com", "substack.com")
BLOG_PATH_PARTS = frozenset({"blog", "blogs", "news", "post", "posts"})
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".gif", ".svg", ".webp")

# --------------------------------------------------------------------------- compiled forms

_FLAGS = re.IGNORECASE
_BOUNDARY = r"(?<![a-z0-9])"
_FAMILY_TEXT = tuple((name, re.compile(_BOUNDARY + f"(?:{pattern})", _FLAGS)) for name, pattern in FAMILIES)
_FAMILY_TAG = tuple((name, re.compile(f"(?:{pattern})[\\w.-]{{0,16}}", _FLAGS)) for name, pattern in FAMILIES)
_CLAIM = re.compile(r"\b(?:" + "|".join(CLAIM_PHRASES) + r")\b", _FLAGS)
_TRICKS = tuple((tag, re.compile("|".join(f"(?:{p})" for p in patterns), _FLAGS))
                for tag, patterns in TRICK_PATTERNS.items())
_ANY_TRICK = re.compile("|".join(f"(?:{p})" for patterns in TRICK_PATTERNS.values() for p in patterns), _FLAGS)

_URL = re.compile(r"https?://[^\s<>\"'`()\[\]{}|\\^]{4,400}", _FLAGS)
_ARXIV_REF = re.compile(r"\barxiv: ?(\d{4}\.\d{4,5})(?:v\d{1,2})?\b", _FLAGS)
_ARXIV_ID = re.compile(r"(\d{4}\.\d{4,5})")
_FRONT_CLOSE = re.compile(r"^(?:---|\.\.\.)[ \t]*\r?$", re.MULTILINE)
_FRONT_KEY = re.compile(r"([A-Za-z_][\w-]{0,63})[ \t]*:(?:[ \t]+(.*))?")
_FRONT_ITEM = re.compile(r"[ \t]*-[ \t]+(.*)")
_LIST_MARK = re.compile(r"(?:[-*+]|\d{1,3}[.)])[ \t]+")
_THEMATIC_BREAK = re.compile(r"(?:[-*_][ \t]*){3,}")
_IMAGE = re.compile(r"!\[[^\[\]]{0,300}\]\([^()\s]{0,500}\)")
_LINK = re.compile(r"\[([^\[\]]{0,300})\]\([^()]{0,500}\)")
_TAG = re.compile(r"<[^<>]{0,300}>")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])")
_SPACES = re.compile(r"\s+")


# --------------------------------------------------------------------------- entry point


def scan_card(text: str) -> CardNotes:
    """Front matter, family claims, links and trick sentences of one model card."""
    if not isinstance(text, str):
        text = ""
    truncated = len(text) > MAX_CARD_CHARS
    text = text[:MAX_CARD_CHARS].lstrip("\ufeff")
    front, body = split_front_matter(text)
    base_models = _front_list(front, "base_model")
    tags = _front_list(front, "tags")
    sentences = list(_sentences(body))
    claims = _dedupe_claims([*_base_model_claims(base_models), *_tag_claims(tags), *_text_claims(sentences)])
    return CardNotes(
        family_claims=claims,
        base_models=base_models,
        tags=tags,
        library_name=_front_scalar(front, "library_name"),
        license=_license(front),
        links=_links(text, tags),
        tricks=MappingProxyType(_tricks(sentences)),
        truncated=truncated,
    )


# --------------------------------------------------------------------------- front matter


def split_front_matter(text: str) -> tuple[dict[str, list[str]], str]:
    """The YAML front matter as ``{key: [values]}`` (a small, safe subset of YAML) and the body after it."""
    first_end = text.find("\n")
    if first_end < 0 or text[:first_end].strip() != "---":
        return {}, text
    close = _FRONT_CLOSE.search(text, first_end + 1, MAX_FRONT_MATTER_CHARS)
    if close is None:
        return {}, text
    return _parse_front(text[first_end + 1:close.start()]), text[close.end():]


def _parse_front(block: str) -> dict[str, list[str]]:
    """Top-level ``key: value``, ``key: [a, b]`` and ``key:`` + ``- item`` lines; nested data is skipped."""
    fields: dict[str, list[str]] = {}
    current: str | None = None
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        item = _FRONT_ITEM.fullmatch(line.rstrip())
        if item and current is not None:
            values = fields[current]
            if len(values) < MAX_FRONT_ITEMS:
                values.append(_unquote(item.group(1)))
            continue
        if line[0] in " \t":
            continue  # nested mapping content: not a value we read
        key = _FRONT_KEY.fullmatch(line.rstrip())
        current = key.group(1).lower() if key else None
        if key and current is not None:
            fields[current] = _inline_values(key.group(2) or "")
    return fields


def _inline_values(raw: str) -> list[str]:
    raw = raw.strip()
    if not raw or raw in ("|", ">", "|-", ">-"):
        return []
    if raw.startswith("[") and raw.endswith("]"):
        return [v for v in (_unquote(part) for part in raw[1:-1].split(",")[:MAX_FRONT_ITEMS]) if v]
    return [_unquote(raw)]


def _unquote(value: str) -> str:
    value = value.strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1].strip()
    return value[:MAX_FRONT_VALUE_CHARS]


def _front_list(front: dict[str, list[str]], key: str) -> tuple[str, ...]:
    return tuple(dict.fromkeys(v for v in front.get(key, []) if v))


def _front_scalar(front: dict[str, list[str]], key: str) -> str | None:
    values = front.get(key) or []
    return values[0] if values and values[0] else None


def _license(front: dict[str, list[str]]) -> str | None:
    license_id = _front_scalar(front, "license")
    name = _front_scalar(front, "license_name")
    if license_id == "other" and name:
        return f"other ({name})"
    return license_id or name


# --------------------------------------------------------------------------- sentences


def _sentences(body: str) -> Iterator[str]:
    """Prose sentences of the body; headings, tables, code and rules are skipped, list items stand alone."""
    paragraph: list[str] = []
    fence: str | None = None
    count = 0
    for raw in body.splitlines():
        line = raw.strip()
        if fence is not None:
            fence = None if line.startswith(fence) else fence
            continue
        if line.startswith(("```", "~~~")):
            fence = line[:3]
        is_break = fence is not None or not line or line.startswith(("#", "|", "<!--"))
        if is_break or _THEMATIC_BREAK.fullmatch(line):
            count += yield from _flush(paragraph)
            paragraph = []
            continue
        marker = _LIST_MARK.match(line)
        if marker:
            count += yield from _flush(paragraph)
            paragraph = [line[marker.end():]]
        else:
            paragraph.append(line.lstrip("> \t"))
        if count >= MAX_SENTENCES:
            return
    yield from _flush(paragraph)


def _flush(paragraph: list[str]) -> Generator[str, None, int]:
    """Yield the cleaned sentences of one paragraph; return how many."""
    if not paragraph:
        return 0
    text = _clean_inline(" ".join(paragraph))
    count = 0
    for sentence in _SENTENCE_END.split(text):
        for start in range(0, len(sentence), MATCH_WINDOW):
            piece = sentence[start:start + MATCH_WINDOW].strip()
            if len(piece) >= MIN_SENTENCE_CHARS and " " in piece:
                count += 1
                yield piece
    return count


def _clean_inline(text: str) -> str:
    """Drop images and HTML tags, keep link text, and remove emphasis marks."""
    text = _IMAGE.sub(" ", text)
    text = _LINK.sub(r"\1", text)
    text = _TAG.sub(" ", text)
    text = text.replace("**", "").replace("`", "").replace("__", "")
    return _SPACES.sub(" ", text).strip()


def _excerpt(sentence: str, at: int) -> str:
    """At most ``EXCERPT_CHARS`` of the sentence, placed so that position ``at`` shows."""
    if len(sentence) <= EXCERPT_CHARS:
        return sentence
    start = max(0, min(at - EXCERPT_CHARS // 3, len(sentence) - EXCERPT_CHARS))
    piece = sentence[start:start + EXCERPT_CHARS].strip()
    return ("..." if start > 0 else "") + piece + ("..." if start + EXCERPT_CHARS < len(sentence) else "")


def _tricks(sentences: list[str]) -> dict[str, tuple[str, ...]]:
    found: dict[str, list[str]] = {}
    for sentence in sentences:
        if not _ANY_TRICK.search(sentence):
            continue
        for tag, pattern in _TRICKS:
            match = pattern.search(sentence)
            if match is None:
                continue
            bucket = found.setdefault(tag, [])
            excerpt = _excerpt(sentence, match.start())
            if len(bucket) < MAX_SENTENCES_PER_TAG and excerpt not in bucket:
                bucket.append(excerpt)
    return {tag: tuple(lines) for tag, lines in found.items()}


# --------------------------------------------------------------------------- family claims


def _families_in(text: str) -> list[str]:
    hits = [(m.start(), name) for name, pattern in _FAMILY_TEXT if (m := pattern.search(text))]
    return [name for _, name in sorted(hits)]


def _base_model_claims(base_models: tuple[str, ...]) -> Iterator[FamilyClaim]:
    for value in base_models:
        for name in _families_in(value):
            yield FamilyClaim(family=name, source="base_model", evidence=f"base_model: {value}")


def _tag_claims(tags: tuple[str, ...]) -> Iterator[FamilyClaim]:
    """A tag claims a family only when it is the family's name (plus a version), not e.g. ``llama-factory``."""
    for tag in tags:
        name = next((name for name, pattern in _FAMILY_TAG if pattern.fullmatch(tag)), None)
        if name:
            yield FamilyClaim(family=name, source="tags", evidence=f"tags: {tag}")


def _text_claims(sentences: list[str]) -> Iterator[FamilyClaim]:
    phrases = (claim for sentence in sentences for claim in _CLAIM.finditer(sentence))
    for count, claim in enumerate(phrases):
        if count >= MAX_CLAIM_PHRASES:
            return
        sentence = claim.string
        for name in _families_in(sentence[claim.end():claim.end() + CLAIM_REACH]):
            yield FamilyClaim(family=name, source="text", evidence=_excerpt(sentence, claim.start()))


def _dedupe_claims(claims: list[FamilyClaim]) -> tuple[FamilyClaim, ...]:
    first: dict[str, FamilyClaim] = {}
    for claim in claims:
        first.setdefault(claim.family, claim)
    return tuple(first.values())


# --------------------------------------------------------------------------- links


def _links(text: str, tags: tuple[str, ...]) -> tuple[CardLink, ...]:
    """Paper, code and blog links in card order, one per destination."""
    candidates = [m.group(0) for m in _URL.finditer(text)]
    candidates += [f"https://arxiv.org/abs/{m.group(1)}" for m in _ARXIV_REF.finditer(text)]
    candidates += [f"https://arxiv.org/abs/{m.group(1)}" for tag in tags if (m := _ARXIV_REF.fullmatch(tag))]
    links: dict[str, CardLink] = {}
    for raw in candidates:
        url = raw.rstrip(".,;:!?*_~'\">")
        classified = _classify(url)
        if classified and classified[1] not in links:
            links[classified[1]] = CardLink(kind=classified[0], url=url)
            if len(links) >= MAX_LINKS:
                break
    return tuple(links.values())


def _classify(url: str) -> tuple[str, str] | None:
    """``(kind, dedupe key)`` for a link worth reading, else None."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").lower().removeprefix("www.")
    path = parts.path.rstrip("/")
    segments = [s for s in path.lower().split("/") if s]
    if not host or path.lower().endswith(IMAGE_SUFFIXES) or (segments and segments[-1].startswith("license")):
        return None
    arxiv = _ARXIV_ID.search(path)
    if arxiv and (_on(host, ("arxiv.org", "ar5iv.org")) or (host == "huggingface.co" and segments[:1] == ["papers"])):
        return "paper", f"arxiv:{arxiv.group(1)}"
    key = f"{host}{path.lower()}"
    if _on(host, PAPER_HOSTS) or (host == "huggingface.co" and segments[:1] == ["papers"]) or path.endswith(".pdf"):
        return "paper", key
    if _on(host, CODE_HOSTS) and len(segments) >= 2:
        return "code", "/".join([host, *segments[:2]])  # one link per repository
    if "blog" in host or _on(host, BLOG_HOSTS) or BLOG_PATH_PARTS.intersection(segments):
        return "blog", key
    return None


def _on(host: str, domains: tuple[str, ...]) -> bool:
    return any(host == d or host.endswith("." + d) for d in domains)

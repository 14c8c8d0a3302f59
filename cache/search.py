"""Search text for the catalogue, made to work for Chinese.

SQLite's FTS5 tokenizers split on spaces and punctuation, which Chinese titles do not
have: "分数的初步认识" would be one token and a search for 分数 would find nothing. So
before indexing we write every CJK character as its own token ("分 数 的 初 步 认 识") and
search for a query's CJK runs as *phrases* of consecutive characters. FTS5 keeps token
positions, so a phrase query is an indexed lookup that matches any substring of a title,
including one- and two-character queries (数, 数学), never a scan of all resources.
Latin words and numbers stay whole and are matched by prefix (``math`` finds "mathematics").

Pinyin and word segmentation can later be added as extra indexed columns without changing
how callers use :func:`index_text` and :func:`match_query`.
"""

from __future__ import annotations

import re
import unicodedata

# CJK Unified Ideographs (+ extension A, compatibility ideographs) and the 〇 numeral.
_CJK = "\u3007\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]+|[^\W_]+", re.UNICODE)
_CJK_RUN = re.compile(rf"^[{_CJK}]+$")


def _normalise(text: str) -> str:
    # NFKC folds full-width letters and digits (Ａ１ → A1), common in Chinese titles.
    return unicodedata.normalize("NFKC", text or "").lower()


BOUNDARY = "_"


def index_text(text: str) -> str:
    """Text to store in the FTS index: CJK characters spaced out, words kept whole.

    Where the original has punctuation or a space between two runs, a boundary token
    ``_`` is written (the FTS table declares ``_`` a token character), so a phrase cannot
    match across it: 教科书·法语 must not be found by 书法. Queries never contain ``_``.
    """
    parts = []
    normalised = _normalise(text)
    previous_end = None
    for match in _TOKEN.finditer(normalised):
        if previous_end is not None and match.start() > previous_end:
            parts.append(BOUNDARY)
        run = match.group()
        parts.append(" ".join(run) if _CJK_RUN.match(run) else run)
        previous_end = match.end()
    return " ".join(parts)


def match_query(query: str) -> str | None:
    """An FTS5 MATCH expression for a user's query, or None when it has nothing to search.

    Every run must match (AND): CJK runs as phrases of consecutive characters, other
    words as prefixes. Tokens come from our own segmentation (letters, digits, CJK
    characters only), so the expression cannot carry FTS5 syntax from the user.
    """
    terms = []
    for run in _TOKEN.findall(_normalise(query)):
        if _CJK_RUN.match(run):
            terms.append('"' + " ".join(run) + '"')
        else:
            terms.append('"' + run + '"*')
    return " AND ".join(terms) if terms else None

"""A coarse language guess for drift checks: the writing system, and for Latin script the
European language whose common words the text uses most.

Why not a language-ID model: none ships offline here, and drift only needs to notice that the
*mix* moved (English questions becoming Spanish or Chinese ones), not to label each text exactly.
Short texts with none of the listed words are "latin" (unknown Latin-script language).
"""

from __future__ import annotations

import re
import unicodedata

_WORDS = {
    "en": "the and is are of to in what how why which you it that this for with can do does i my",
    "fr": "le la les et est des une un du pour que qui dans avec comment pourquoi je mon vous",
    "de": "der die das und ist nicht ein eine ich wie was warum mit für den dem zu sie",
    "es": "el la los las y es de que en un una por para cómo qué por qué con mi usted",
    "it": "il lo la gli e è di che un una per come perché con mio sono non",
    "pt": "o a os as e é de que em um uma para como por que com meu você não",
    "nl": "de het een en is van dat in hoe wat waarom met ik mijn je niet",
}
_STOPWORDS = {lang: frozenset(words.split()) for lang, words in _WORDS.items()}
_SCRIPTS = (
    ("CJK", "zh"),
    ("HIRAGANA", "ja"),
    ("KATAKANA", "ja"),
    ("HANGUL", "ko"),
    ("CYRILLIC", "cyrillic"),
    ("GREEK", "el"),
    ("ARABIC", "ar"),
    ("HEBREW", "he"),
    ("DEVANAGARI", "hi"),
    ("THAI", "th"),
)
_WORD = re.compile(r"[^\W\d_]+", re.UNICODE)


def guess_language(text: str) -> str:
    """An ISO 639-1 code ("en", "fr", "zh", ...), "cyrillic", "latin" (unknown) or "none" (no letters)."""
    counts: dict[str, int] = {}
    for char in text:
        if char.isalpha():
            script = _script(char)
            counts[script] = counts.get(script, 0) + 1
    if not counts:
        return "none"
    if "ja" in counts and "zh" in counts:  # Japanese mixes kanji with kana
        counts["ja"] += counts.pop("zh")
    top = max(counts, key=lambda k: counts[k])
    return _latin_language(text) if top == "latin" else top


def _script(char: str) -> str:
    name = unicodedata.name(char, "")
    for prefix, code in _SCRIPTS:
        if name.startswith(prefix):
            return code
    return "latin"


def _latin_language(text: str) -> str:
    words = [w.lower() for w in _WORD.findall(text)]
    scores = {lang: sum(w in vocab for w in words) for lang, vocab in _STOPWORDS.items()}
    best = max(scores, key=lambda k: scores[k])
    return best if scores[best] > 0 else "latin"

"""Rules of the discussion on a V2MOM: sizes, @mentions, which items a comment may be about. Pure."""

import re

MAX_TEXT = 4000
MAX_MENTIONS = 20
MAX_EDITS = 50  # an edit keeps the prior text: this bounds a comment's document
ITEM_PARTS = ("values", "methods", "measures", "obstacles")

# "@lee" or "@amira.haddad"; a sentence's final dot ("thanks @lee.") is not part of the id.
_MENTION = re.compile(r"(?<![\w@])@([A-Za-z0-9_.-]{1,64})")


def mentioned_in(text: str) -> list[str]:
    """The first MAX_MENTIONS ids written as @id in the text, once each, in order. Whether they are people is the
    directory's: the cap bounds the look-ups a text of "@a @b @c ..." can cost."""
    found = dict.fromkeys(match.rstrip(".") for match in _MENTION.findall(text or "") if match.rstrip("."))
    return list(found)[:MAX_MENTIONS]


def item_ids(content: dict) -> set[str]:
    """The ids of the values, methods, measures and obstacles a comment may be about."""
    return {item.get("id") for part in ITEM_PARTS for item in content.get(part) or []}

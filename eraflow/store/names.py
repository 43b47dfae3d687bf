"""Names on disk: an entity or scope as a safe, collision-free folder name."""

from __future__ import annotations

import hashlib
import re


def entity_slug(entity: str) -> str:
    """A file-system-safe, collision-free folder name for an entity (or scope)."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", entity)
    if slug != entity or slug in {"", ".", ".."} or slug.startswith((".", "_")):
        slug = f"{slug.lstrip('._') or 'x'}-{hashlib.sha1(entity.encode()).hexdigest()[:8]}"
    return slug

"""mkdocs hook (see mkdocs.yml): leave out of the nav the pages whose files are not in docs/.

The nav lists pages other branches add (docs/sam2.md, docs/runs.md, ...); until they are merged, this
branch's strict build would fail on them. Only nav entries are dropped: a link in a page to a missing
file still fails the build.
"""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger("mkdocs.hooks.garvideo")


def _present(items: list, docs_dir: Path) -> list:
    kept = []
    for item in items:
        if isinstance(item, dict):
            ((title, target),) = item.items()
            if isinstance(target, list):
                target = _present(target, docs_dir)
                if target:
                    kept.append({title: target})
            elif "://" in str(target) or (docs_dir / str(target)).is_file():
                kept.append(item)
            else:
                log.info("nav: %s (%s) is not in docs/ yet; left out", title, target)
        elif "://" in str(item) or (docs_dir / str(item)).is_file():
            kept.append(item)
    return kept


def on_config(config):
    if config.nav:
        config.nav = _present(config.nav, Path(config.docs_dir))
    return config

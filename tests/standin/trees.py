"""Chapter trees (``/zxx/ndrv2/national_lesson/trees/{id}.json``, §4.1 step 3).

One generator serves both course textbooks (tmId) and e-textbooks (the ``ebook_id`` of an
``ebook_mapping`` file). The root is a JSON array of unit nodes; lessons are their
``child_nodes``; ``node_path`` is the slash-joined chain of ids from the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from .auth import iso_time
from .common import BASE_EPOCH, cn_number, make_uuid, rng_for

TOPICS = ("大青树下的小学", "花的学校", "不懂就要问", "观潮", "走月亮", "秋晚的江上", "繁星",
          "古诗三首", "精卫填海", "盘古开天地", "分数的初步认识", "长方形和正方形", "万以内的加法",
          "测量", "时分秒", "倍的认识", "小数的意义", "图形的运动", "Hello!", "My family",
          "Colours", "At the zoo", "Seasons", "光的传播", "声音的产生", "水的三态变化",
          "植物的一生", "认识地球", "我们的学校", "家乡的变化", "中华传统节日", "多彩的生活")


@dataclass(frozen=True)
class Leaf:
    """A lesson node: the place a lesson package hangs in the tree."""

    unit_id: str
    node_id: str
    title: str
    unit_title: str

    @property
    def node_path(self) -> str:
        return f"{self.unit_id}/{self.node_id}"


@lru_cache(maxsize=4096)
def tree(seed: int, tree_id: str, small: bool) -> tuple[tuple, tuple[Leaf, ...]]:
    """(root nodes as a tuple of dicts — treat as read-only, leaves in reading order)."""
    rng = rng_for(seed, "tree", tree_id)
    units = rng.randint(2, 3) if small else rng.randint(4, 8)
    created = iso_time(BASE_EPOCH - rng.uniform(100, 700) * 86400)
    updated = iso_time(BASE_EPOCH - rng.uniform(1, 99) * 86400)
    roots, leaves = [], []
    lesson_number = 0
    for u in range(1, units + 1):
        unit_id = make_uuid(seed, "unit", tree_id, u)
        unit_title = f"第{cn_number(u)}单元"
        children = []
        for _ in range(rng.randint(2, 3) if small else rng.randint(2, 5)):
            lesson_number += 1
            node_id = make_uuid(seed, "node", tree_id, lesson_number)
            title = f"{lesson_number} {rng.choice(TOPICS)}"
            children.append(_node(node_id, title, f"{unit_id}/{node_id}", tree_id,
                                  created, updated, []))
            leaves.append(Leaf(unit_id, node_id, title, unit_title))
        roots.append(_node(unit_id, unit_title, unit_id, tree_id, created, updated, children))
    return tuple(roots), tuple(leaves)


def _node(node_id, title, node_path, tree_id, created, updated, children) -> dict:
    return {
        "id": node_id, "title": title, "rich_title": None, "description": None,
        "chapter_type": "chapter", "language": "zh-CN", "node_path": node_path,
        "tree_id": tree_id, "create_time": created, "update_time": updated,
        "custom_properties": {"tree_type": "national_lesson"},
        "child_nodes": children,
    }

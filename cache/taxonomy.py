"""The national taxonomy: the browse order of its levels and the natural order of values.

Browsing goes 学段 → 年级 → 学科 → 版本 → 册次, as the platform's own filters do. Values
are kept exactly as the platform names them (小学, 三年级, 数学…); this module only knows
how to sort them the way a Chinese teacher expects (一年级 before 二年级, 语文 before 数学),
which a plain string sort gets wrong.
"""

from __future__ import annotations

LEVELS = ("stage", "grade", "subject", "edition", "volume")

_STAGES = ("学前", "小学", "初中", "高中", "特殊教育", "小学（五•四学制）", "初中（五•四学制）")
_GRADES = ("一年级", "二年级", "三年级", "四年级", "五年级", "六年级", "七年级", "八年级",
           "九年级", "高一", "高二", "高三", "高中年级", "教师用书", "学生用书")
_SUBJECTS = ("语文", "数学", "英语", "道德与法治", "科学", "物理", "化学", "生物学", "历史",
             "地理", "思想政治", "信息技术", "体育与健康", "艺术", "艺术·音乐", "艺术·美术",
             "音乐", "美术", "劳动", "书法", "日语", "俄语")
_VOLUMES = ("上册", "下册", "全一册", "必修", "选择性必修")

_ORDERS = {
    "stage": {v: i for i, v in enumerate(_STAGES)},
    "grade": {v: i for i, v in enumerate(_GRADES)},
    "subject": {v: i for i, v in enumerate(_SUBJECTS)},
    "volume": {v: i for i, v in enumerate(_VOLUMES)},
}


def sort_key(level: str, value: str) -> tuple[int, str]:
    """Known values in the platform's order, then unknown ones alphabetically."""
    order = _ORDERS.get(level, {})
    return (order.get(value, len(order)), value)


def next_level(filters: dict[str, str]) -> str | None:
    """The first taxonomy level not yet chosen in ``filters`` (None when all are)."""
    for level in LEVELS:
        if not filters.get(level):
            return level
    return None

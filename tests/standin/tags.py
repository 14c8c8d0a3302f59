"""E-textbook tag trees (§2.3): reading their leaves, and generating one when no capture.

A leaf is a path of ``(tag_id, tag_name, tag_dimension_id)`` from the tree root plus the
册次 (volume) hidden under its last level; generated books hang on leaves.
"""

from __future__ import annotations

from .common import make_uuid

SPORT_LEAF = [([("sport-xd", "小学", "zxxxd"), ("sport-xk", "体育与健康", "zxxxk"),
                 ("sport-bb", "华东师大版", "zxxbb"), ("sport-nj", "教师用书", "zxxnj")],
                ("sport-cc", "全一册"))]


def leaves(tag_tree: dict, names: dict) -> list[tuple[list, tuple | None]]:
    """(path of (tag_id, name, dimension), volume (id, name) or None) for every leaf, with
    one entry per known 册次 hidden under the leaf's last level."""
    out = []

    def walk(node, path):
        levels = node.get("hierarchies") or []
        kids = [c for level in levels for c in (level.get("children") or [])]
        if not kids:
            volumes = []
            for level in levels:
                ext = level.get("ext") or {}
                if ext.get("tag_dimension_id") == "zxxcc":
                    volumes += [(t, names[t]) for t in ext.get("hidden_tags") or [] if t in names]
            for volume in volumes or [None]:
                out.append((path, volume))
            return
        for child in kids:
            walk(child, path + [(child["tag_id"], child["tag_name"], child["tag_dimension_id"])])

    walk(tag_tree, [])
    return out


def generated_tag_tree(seed: int, small: bool) -> tuple[dict, dict]:
    """A tag tree of the captured shape: 电子教材 → 学段 → 学科 → 版本 → 年级, with 册次 as
    hidden tags of the last level."""
    if small:
        plan = {"小学": {"语文": ["统编版"], "数学": ["人教版", "北师大版"], "英语": ["人教版"]},
                "初中": {"语文": ["统编版"], "数学": ["人教版"], "英语": ["外研版"]}}
        grades = {"小学": ["三年级", "四年级"], "初中": ["七年级"]}
    else:
        subjects = ["语文", "数学", "英语", "道德与法治", "科学", "艺术·音乐", "艺术·美术", "体育与健康"]
        plan = {stage: {s: ["人教版", "北师大版", "苏教版"] for s in subjects}
                for stage in ("小学", "初中")}
        plan["高中"] = {s: ["人教版", "北师大版"] for s in ("语文", "数学", "英语", "物理", "化学", "生物学")}
        grades = {"小学": [f"{n}年级" for n in "一二三四五六"], "初中": ["七年级", "八年级", "九年级"],
                  "高中": ["高中年级"]}
    ids = lambda *parts: make_uuid(seed, "tag", *parts)
    up, down = ids("cc", "上册"), ids("cc", "下册")

    def level(name, dimension, children, hidden=()):
        return {"children": children, "hierarchy_name": name,
                "ext": {"tag_dimension_id": dimension, "hidden_tags": list(hidden),
                        "has_next_tag_path": [c["tag_id"] for c in children]}}

    def node(tag_id, name, dimension, levels):
        return {"tag_id": tag_id, "tag_name": name, "tag_dimension_id": dimension,
                "tag_description": None, "ext": None, "hierarchies": levels}

    stages = []
    for stage, subjects in plan.items():
        subject_nodes = []
        for subject, editions in subjects.items():
            edition_nodes = []
            for edition in editions:
                grade_nodes = [node(ids("nj", g), g, "zxxnj",
                                    [level("册次", "zxxcc", [], [up, down])])
                               for g in grades[stage]]
                edition_nodes.append(node(ids("bb", edition), edition, "zxxbb",
                                          [level("年级", "zxxnj", grade_nodes)]))
            subject_nodes.append(node(ids("xk", subject), subject, "zxxxk",
                                      [level("版本", "zxxbb", edition_nodes)]))
        stages.append(node(ids("xd", stage), stage, "zxxxd", [level("学科", "zxxxk", subject_nodes)]))
    root_kind = node(ids("kind"), "电子教材", "5036342742", [level("电子教材", "zxxxd", stages)])
    tree_dict = {"tag_path": ids("root"), "hierarchies": [level("专题*", "5036342742", [root_kind])],
                 "ext": None, "tenant_id": None}
    return tree_dict, {up: "上册", down: "下册"}

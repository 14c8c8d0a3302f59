"""Regenerate the built-in sample library: PDFs, cover images, videos and library.json.

A developer tool, run by hand when the sample content changes (never by tests or the demo,
which use the committed files). See README.md for what it needs. Typical use:

    .venv/bin/python cache/sample/generate.py              # everything (videos take minutes)
    .venv/bin/python cache/sample/generate.py --skip-videos

Sources: src/*.html (printed by headless Chromium), src/base.css, src/diagrams.js, the
exercise items below, and videos.py. Output: plain files next to this script plus
library.json, the manifest that cache/sample.py loads.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import os
import re
import shutil
import string
import subprocess
import sys
import tempfile
from pathlib import Path

import videos  # sibling module: this script runs as a file, not as part of the cache package
from fontTools import subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTFont, newTable

HERE = Path(__file__).resolve().parent
SRC = HERE / "src"
SIZE_LIMIT = 8 * 1024 * 1024  # the whole folder ships inside the binary
TOOLS = ("chromium", "ffmpeg", "pdftoppm", "pdffonts", "fc-match")
CHROMIUM = ["chromium", "--headless", "--no-sandbox", "--disable-gpu",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-quic", "--no-first-run", "--no-pdf-header-footer"]
# css file name → fontconfig pattern of the face to subset (Simplified Chinese forms).
FONT_FACES = {
    "sans-400": "Noto Sans CJK SC:style=Regular",
    "sans-700": "Noto Sans CJK SC:style=Bold",
    "serif-400": "Noto Serif CJK SC:style=Regular",
    "serif-700": "Noto Serif CJK SC:style=Bold",
}
VIDEO_FONTS = {"sans": "sans-400", "bold": "sans-700", "serif": "serif-700"}
# PDFs say when they were made; a fixed date keeps regenerated files byte-identical.
PDF_DATE = b"D:20250901000000+00'00'"

MATH = {"stage": "小学", "grade": "三年级", "subject": "数学", "edition": "人教版", "volume": "上册"}
CHINESE = {"stage": "小学", "grade": "四年级", "subject": "语文", "edition": "统编版",
           "volume": "上册"}
ENGLISH = {"stage": "初中", "grade": "七年级", "subject": "英语", "edition": "人教版",
           "volume": "上册"}

# --- the library ------------------------------------------------------------------------
# Each entry becomes one manifest resource. "html" names the source a PDF is printed from;
# "exercise" the item list a part's JSON and printable PDF are made from; "video" a lesson
# of videos.py. File names derive from the keys.

EXERCISES = {
    "math-3a-fractions-1-exercise": {
        "title": "几分之一 课后练习",
        "items": [
            {"id": "q1", "type": "single", "stem": "把一个蛋糕平均分成4份，每份是它的（　）。",
             "options": ["1/2", "1/3", "1/4", "4"], "answer": [2],
             "explanation": "平均分成4份，每份是它的四分之一，写作1/4。"},
            {"id": "q2", "type": "multiple", "stem": "下面哪些图形的涂色部分是它的1/2？",
             "options": ["一个圆平均分成2份，涂色1份",
                         "一个长方形分成大小不同的2份，涂色1份",
                         "一个正方形沿对角线分成2份，涂色1份",
                         "一个三角形平均分成3份，涂色1份"],
             "answer": [0, 2],
             "explanation": "必须是平均分成2份，每份才是它的1/2。正方形沿对角线分成的两个三角形完全一样大；"
                            "大小不同的2份不是平均分；平均分成3份，每份是1/3。"},
            {"id": "q3", "type": "fill", "stem": "1/5 读作（　）。", "answer": ["五分之一"],
             "explanation": "读分数时先读分母，再读“分之”，最后读分子。"},
            {"id": "q4", "type": "fill", "stem": "八分之一写作（　）。", "answer": ["1/8"],
             "explanation": "先写分数线，再写分母8，最后写分子1。"},
            {"id": "q5", "type": "fill", "stem": "1/6 的分母是（　）。", "answer": ["6", "六"],
             "explanation": "分数线下面的数是分母，表示平均分成了几份。"},
            {"id": "q6", "type": "single", "stem": "把一张纸分成2份，每份一定是它的1/2。这句话（　）。",
             "options": ["对", "错"], "answer": [1],
             "explanation": "只有平均分成2份，每份才是它的1/2；随便分成2份不一定一样大。"},
            {"id": "q7", "type": "single", "stem": "比较 1/3 和 1/4 的大小，正确的是（　）。",
             "options": ["1/3 > 1/4", "1/3 < 1/4", "1/3 = 1/4"], "answer": [0],
             "explanation": "把同一个物体平均分，分的份数越多，每份越小，所以1/3 > 1/4。"},
            {"id": "q8", "type": "single",
             "stem": "小明吃了一个披萨的1/8，小红吃了同样大的一个披萨的1/6，（　）吃得多。",
             "options": ["小明", "小红", "一样多"], "answer": [1],
             "explanation": "同样大的披萨，1/6 > 1/8，所以小红吃得多。"},
        ],
    },
    "chinese-4a-guanchao-1-exercise": {
        "title": "观潮 课后练习",
        "items": [
            {"id": "q1", "type": "single", "stem": "“潮”字的部首是（　）。",
             "options": ["氵", "月", "十", "日"], "answer": [0],
             "explanation": "“潮”与水有关，部首是三点水。"},
            {"id": "q2", "type": "single", "stem": "“天下奇观”中“奇观”的意思是（　）。",
             "options": ["雄伟美丽而又少见的景象", "奇怪的看法", "普通的风景"], "answer": [0],
             "explanation": "“奇观”指雄伟美丽而又罕见的景象，“天下奇观”说钱塘江大潮举世少有。"},
            {"id": "q3", "type": "fill", "stem": "钱塘江大潮，自古就有“（　）”的美称。",
             "answer": ["天下奇观"], "explanation": "课文第一句点明了大潮的美称。"},
            {"id": "q4", "type": "single", "stem": "课文中，一年里观潮最好的日子在农历（　）前后。",
             "options": ["正月十五", "五月初五", "八月十八", "九月初九"], "answer": [2],
             "explanation": "农历八月十八前后，钱塘江大潮最为壮观。"},
            {"id": "q5", "type": "multiple", "stem": "课文按时间顺序写大潮，写到了下面哪几个阶段？",
             "options": ["潮来前", "潮来时", "潮头过后", "第二天早上"], "answer": [0, 1, 2],
             "explanation": "课文写了潮来前、潮来时和潮头过后的景象，没有写第二天。"},
            {"id": "q6", "type": "single", "stem": "“那声音好像山崩地裂一般”写出了大潮的（　）。",
             "options": ["颜色洁白", "声音巨大", "速度很慢"], "answer": [1],
             "explanation": "“山崩地裂”形容声音极大，写出了潮声的震撼。"},
            {"id": "q7", "type": "fill", "stem": "“人山人海”形容人（　）。",
             "answer": ["非常多", "很多", "特别多", "多"],
             "explanation": "人群像山、像海一样，形容聚集的人非常多。"},
        ],
    },
}

LIBRARY = [
    {"key": "math-3a", "kind": "textbook", "title": "义务教育教科书·数学 三年级 上册",
     "description": "人教版小学数学三年级上册示例电子教材：封面、目录和第八单元“分数的初步认识”的几页。",
     **MATH, "html": "math-3a.html"},
    {"key": "chinese-4a", "kind": "textbook", "title": "义务教育教科书·语文 四年级 上册",
     "description": "统编版小学语文四年级上册示例电子教材：封面、目录和第一单元的单元导语、课文《观潮》。",
     **CHINESE, "html": "chinese-4a.html"},
    {"key": "english-7a", "kind": "textbook", "title": "义务教育教科书·英语 七年级 上册",
     "description": "人教版初中英语七年级上册示例电子教材：封面、目录和预备单元的两页。",
     **ENGLISH, "html": "english-7a.html"},
    {"key": "math-3a-fractions-1", "kind": "lesson_package", "title": "几分之一",
     "description": "结合分月饼、折纸等活动认识几分之一，会读、会写几分之一，比较几分之一的大小。"
                    "第一课时含微课视频、课件、教学设计、学习任务单和课后练习。",
     **MATH, "chapter": ["第八单元 分数的初步认识", "1. 几分之一"],
     "cover": {"subtitle": "三年级上册 · 第八单元", "theme": "math"},
     "parts": [
         {"suffix": "video", "kind": "video", "title": "微课视频", "video": True},
         {"suffix": "courseware", "kind": "courseware", "title": "课件",
          "html": "math-3a-fractions-1-courseware.html"},
         {"suffix": "plan", "kind": "lesson_plan", "title": "教学设计",
          "html": "math-3a-fractions-1-plan.html"},
         {"suffix": "tasks", "kind": "task_sheet", "title": "学习任务单",
          "html": "math-3a-fractions-1-tasks.html"},
         {"suffix": "exercise", "kind": "exercise", "title": "课后练习", "exercise": True},
     ]},
    {"key": "chinese-4a-guanchao-1", "kind": "lesson_package", "title": "观潮",
     "description": "朗读课文，认识生字词，按“潮来前、潮来时、潮头过后”的顺序边读边想象画面，"
                    "感受钱塘江大潮的雄伟壮观。第一课时含微课视频、学习任务单和课后练习。",
     **CHINESE, "chapter": ["第一单元", "1 观潮"],
     "cover": {"subtitle": "四年级上册 · 第一单元", "theme": "chinese"},
     "parts": [
         {"suffix": "video", "kind": "video", "title": "微课视频", "video": True},
         {"suffix": "tasks", "kind": "task_sheet", "title": "学习任务单",
          "html": "chinese-4a-guanchao-1-tasks.html"},
         {"suffix": "exercise", "kind": "exercise", "title": "课后练习", "exercise": True},
     ]},
]
LESSON = "第一课时"  # every sample package has just its first 课时
TAXONOMY = ("description", "stage", "grade", "subject", "edition", "volume")


# --- fonts ------------------------------------------------------------------------------

def _font_source(pattern: str) -> tuple[str, int]:
    out = subprocess.run(["fc-match", "-f", "%{file}\n%{index}", pattern],
                         check=True, capture_output=True, text=True).stdout.split("\n")
    if "CJK" not in out[0]:
        sys.exit(f"fontconfig has no {pattern!r}: install fonts-noto-cjk")
    return out[0], int(out[1])


def _to_truetype(font: TTFont) -> None:
    """Replace the CFF outlines with quadratic TrueType ones (what fontTools' otf2ttf does)."""
    order = font.getGlyphOrder()
    glyph_set = font.getGlyphSet()
    glyphs = {}
    for name in order:
        pen = TTGlyphPen(glyph_set)
        glyph_set[name].draw(Cu2QuPen(pen, max_err=1.0, reverse_direction=True))
        glyphs[name] = pen.glyph()
    font["loca"] = newTable("loca")
    glyf = font["glyf"] = newTable("glyf")
    glyf.glyphOrder, glyf.glyphs = order, glyphs
    del font["CFF "]
    if "VORG" in font:
        del font["VORG"]
    glyf.compile(font)
    hmtx = font["hmtx"]
    for name, glyph in glyphs.items():
        hmtx[name] = (hmtx[name][0], getattr(glyph, "xMin", 0))
    maxp = font["maxp"] = newTable("maxp")
    maxp.tableVersion = 0x00010000
    maxp.maxZones = 1
    for attr in ("maxTwilightPoints", "maxStorage", "maxFunctionDefs", "maxInstructionDefs",
                 "maxStackElements", "maxSizeOfInstructions", "maxComponentElements"):
        setattr(maxp, attr, 0)
    font["post"].formatType = 3.0  # no glyph names needed
    font.sfntVersion = "\0\1\0\0"


def build_fonts(text: str, out_dir: Path) -> dict[str, Path]:
    """TrueType subsets of Noto CJK SC holding exactly the characters the sources use."""
    out_dir.mkdir(parents=True, exist_ok=True)
    options = subset.Options()
    options.desubroutinize = True  # flat charstrings convert to TrueType cleanly
    options.name_IDs = ["*"]
    options.layout_features = ["*"]
    fonts = {}
    for name, pattern in FONT_FACES.items():
        path, index = _font_source(pattern)
        # Keep the source's timestamp: a fresh one would change every PDF on each run.
        font = TTFont(path, fontNumber=index, recalcTimestamp=False)
        subsetter = subset.Subsetter(options)
        subsetter.populate(text=text)
        subsetter.subset(font)
        _to_truetype(font)
        fonts[name] = out_dir / f"{name}.ttf"
        font.save(fonts[name])
    return fonts


# --- printing ---------------------------------------------------------------------------

def print_pdf(source: Path, out: Path) -> None:
    subprocess.run(CHROMIUM + [f"--print-to-pdf={out}", source.as_uri()], check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _normalise_pdf(out)
    _check_fonts(out)


def _normalise_pdf(path: Path) -> None:
    """Fix the creation dates and the document ID, which Chromium fills from the clock.

    Substitutions keep every byte length, so the cross-reference table stays valid.
    """
    data = path.read_bytes()
    data = re.sub(rb"\(D:\d{14}[^)]*\)",
                  lambda m: b"(" + PDF_DATE.ljust(len(m.group(0)) - 2)[:len(m.group(0)) - 2] + b")",
                  data)
    ids = re.search(rb"/ID \[<([0-9A-Fa-f]+)> <([0-9A-Fa-f]+)>\]", data)
    if ids:
        blank = data[:ids.start(1)] + b"0" * len(ids.group(1)) + data[ids.end(1):]
        digest = hashlib.md5(blank).hexdigest().upper().encode()
        fixed = (digest * 4)[:len(ids.group(1))]
        data = data[:ids.start(1)] + fixed + data[ids.end(1):ids.start(2)] + fixed + data[ids.end(2):]
    path.write_bytes(data)


def _check_fonts(pdf: Path) -> None:
    """Every font must be an embedded subset: a Type 3 font means a face was synthesised."""
    lines = subprocess.run(["pdffonts", str(pdf)], check=True, capture_output=True,
                           text=True).stdout.splitlines()[2:]
    for line in lines:
        if "Type 3" in line or " no " in line[-30:]:
            sys.exit(f"{pdf.name}: font not embedded as a subset: {line}")


def jpeg_from_pdf(pdf: Path, out: Path, width: int) -> None:
    """Render page 1 as a small JPEG tile (pdftoppm adds no timestamps: stable bytes)."""
    subprocess.run(["pdftoppm", "-jpeg", "-jpegopt", "quality=85,optimize=y", "-f", "1",
                    "-l", "1", "-scale-to-x", str(width), "-scale-to-y", "-1", "-singlefile",
                    str(pdf), str(out.with_suffix(""))], check=True)


# --- generated HTML ---------------------------------------------------------------------

FRACTION = re.compile(r"(\d+)/(\d+)")


def _rich(text: str) -> str:
    """Escape, then typeset a/b as a stacked fraction, as printed worksheets do."""
    return FRACTION.sub(r'<span class="frac"><span>\1</span><span>\2</span></span>',
                        html.escape(text))


def exercise_html(entry: dict, meta: dict) -> str:
    labels = {"single": "单选题", "multiple": "多选题", "fill": "填空题"}
    questions, answers = [], []
    for number, item in enumerate(entry["items"], 1):
        options = "".join(f"<li>{_rich(o)}</li>" for o in item.get("options", []))
        questions.append(
            f'<li><span class="qtype">（{labels[item["type"]]}）</span>{_rich(item["stem"])}'
            + (f'<ol class="options" type="A">{options}</ol>' if options else "") + "</li>")
        if item["type"] == "fill":
            answer = " ／ ".join(_rich(a) for a in item["answer"])
        else:
            answer = "".join("ABCDEFGH"[i] for i in item["answer"])
        answers.append(f"<li><strong>{answer}</strong>　{_rich(item['explanation'])}</li>")
    heading = f"{meta['subject']} · {meta['grade']}{meta['volume']} · {meta['edition']}"
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(entry['title'])}</title>
<link rel="stylesheet" href="base.css"><link rel="stylesheet" href="worksheet.css">
</head><body>
<header class="sheet-head"><div class="kicker">{html.escape(heading)} · {LESSON}</div>
<h1>{html.escape(entry['title'])}</h1>
<p class="who">班级 <span class="blank"></span>　姓名 <span class="blank"></span>　
用时 <span class="blank"></span> 分钟</p></header>
<ol class="questions">{''.join(questions)}</ol>
<h2 class="new-page">参考答案与解析</h2>
<ol class="answers">{''.join(answers)}</ol>
</body></html>
"""


def cover_html(entry: dict) -> str:
    theme = entry["cover"]["theme"]
    art = {
        "math": '<figure class="shape" data-shape="pie" data-parts="4" data-shaded="1" '
                'data-size="150"></figure>',
        "chinese": '<svg width="200" height="120" viewBox="0 0 200 120">'
                   '<rect width="200" height="40" fill="#cfe6f5"/>'
                   '<rect y="40" width="200" height="6" fill="#7fa86b"/>'
                   '<rect y="46" width="200" height="74" fill="#4f8fc0"/>'
                   '<path d="M0,78 Q25,64 50,78 T100,78 T150,78 T200,78 L200,92 Q175,80 150,92'
                   ' T100,92 T50,92 T0,92 Z" fill="#f7fbff"/></svg>',
    }[theme]
    return f"""<!doctype html>
<html lang="zh-CN"><head><meta charset="utf-8"><title>{html.escape(entry['title'])}</title>
<link rel="stylesheet" href="base.css"><link rel="stylesheet" href="cover.css"></head>
<body class="{theme}"><section class="page tile">
  <div class="kicker">{html.escape(entry['subject'])} · {html.escape(entry['edition'])}</div>
  <div class="sub">{html.escape(entry['cover']['subtitle'])}</div>
  <div class="art">{art}</div>
  <h1 class="serif">{html.escape(entry['title'])}</h1>
  <div class="lesson">{LESSON} · 课程包</div>
</section><script src="diagrams.js"></script></body></html>
"""


# --- manifest ---------------------------------------------------------------------------

PDF_MIME, JPEG_MIME = "application/pdf", "image/jpeg"


def _part_files(key: str, part: dict) -> list[dict]:
    if part.get("video"):
        return [{"path": f"{key}.mp4", "role": "video", "mime": "video/mp4"},
                {"path": f"{key}-poster.jpg", "role": "cover", "mime": JPEG_MIME}]
    if part.get("exercise"):
        return [{"path": f"{key}.json", "role": "exercise", "mime": "application/json"},
                {"path": f"{key}.pdf", "role": "pdf", "mime": PDF_MIME}]
    return [{"path": f"{key}.pdf", "role": "pdf", "mime": PDF_MIME}]


def manifest() -> dict:
    resources = []
    for entry in LIBRARY:
        key = entry["key"]
        item = {"key": key, "kind": entry["kind"], "title": entry["title"],
                **{field: entry[field] for field in TAXONOMY}}
        if entry["kind"] == "textbook":
            item["files"] = [{"path": f"{key}.pdf", "role": "source", "mime": PDF_MIME},
                             {"path": f"{key}-cover.jpg", "role": "cover", "mime": JPEG_MIME}]
        else:
            item["chapter"] = entry["chapter"]
            item["files"] = [{"path": f"{key}-cover.jpg", "role": "cover", "mime": JPEG_MIME}]
            item["parts"] = [
                {"key": f"{key}-{p['suffix']}", "kind": p["kind"], "title": p["title"],
                 "lesson": LESSON, "files": _part_files(f"{key}-{p['suffix']}", p)}
                for p in entry["parts"]]
        resources.append(item)
    return {"format": "shuqiao-sample", "version": 1, "resources": resources}


# --- main -------------------------------------------------------------------------------

def generate(build: Path, skip_videos: bool) -> None:
    shutil.copytree(SRC, build, dirs_exist_ok=True)
    prints: list[tuple[str, str]] = []  # (html in build, pdf name)
    covers: list[tuple[str, int]] = []  # (pdf name, tile width): page 1 becomes <stem>-cover.jpg
    lessons = {}
    for entry in LIBRARY:
        key = entry["key"]
        if entry["kind"] == "textbook":
            prints.append((entry["html"], f"{key}.pdf"))
            covers.append((f"{key}.pdf", 300))
            continue
        (build / f"{key}-cover.html").write_text(cover_html(entry), encoding="utf-8")
        prints.append((f"{key}-cover.html", f"{key}-cover.pdf"))
        covers.append((f"{key}-cover.pdf", 300))
        for part in entry["parts"]:
            part_key = f"{key}-{part['suffix']}"
            if "html" in part:
                prints.append((part["html"], f"{part_key}.pdf"))
            elif part.get("exercise"):
                exercise = EXERCISES[part_key]
                (build / f"{part_key}.html").write_text(exercise_html(exercise, entry),
                                                        encoding="utf-8")
                prints.append((f"{part_key}.html", f"{part_key}.pdf"))
                document = {"format": "shuqiao-exercise", "version": 1,
                            "title": exercise["title"], "items": exercise["items"]}
                (HERE / f"{part_key}.json").write_text(
                    json.dumps(document, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
            elif part.get("video"):
                lessons[part_key] = videos.LESSONS[key]()

    # Everything that can put text on a page: markup, CSS content and diagram labels.
    corpus = "".join(p.read_text(encoding="utf-8") for p in sorted(build.iterdir())
                     if p.suffix in (".html", ".css", ".js"))
    corpus += "".join(videos.texts(lesson) for lesson in lessons.values())
    corpus += string.printable + "　，。、；：？！“”‘’（）《》——……·—→←√○＞＜＝"
    fonts = build_fonts(corpus, build / "fonts")
    print(f"fonts: {', '.join(f'{p.name} {p.stat().st_size // 1024} KB' for p in fonts.values())}")

    for source, pdf in prints:
        # Cover PDFs are only an intermediate step to the JPEG tile.
        target = (build if pdf.endswith("-cover.pdf") else HERE) / pdf
        print_pdf(build / source, target)
    for pdf, width in covers:
        source = (build if pdf.endswith("-cover.pdf") else HERE) / pdf
        stem = pdf.removesuffix(".pdf").removesuffix("-cover")
        jpeg_from_pdf(source, HERE / f"{stem}-cover.jpg", width)

    if not skip_videos:
        video_fonts = {role: fonts[name] for role, name in VIDEO_FONTS.items()}
        for part_key, lesson in lessons.items():
            print(f"video {part_key} (several minutes)…", flush=True)
            # Render beside the final names, then rename: a demo or test running meanwhile
            # never loads a half-written video.
            video, poster = HERE / f"{part_key}.mp4", HERE / f"{part_key}-poster.jpg"
            rendering = (video.with_suffix(".rendering.mp4"),
                         poster.with_suffix(".rendering.jpg"))
            videos.render(lesson, *rendering, build, video_fonts)
            os.replace(rendering[0], video)
            os.replace(rendering[1], poster)

    library = manifest()
    (HERE / "library.json").write_text(json.dumps(library, ensure_ascii=False, indent=2) + "\n",
                                       encoding="utf-8")
    report(library)


def report(library: dict) -> None:
    names = [f["path"] for r in library["resources"]
             for f in r["files"] + [f for p in r.get("parts", []) for f in p["files"]]]
    missing = [n for n in names if not (HERE / n).is_file()]
    if missing:
        sys.exit(f"library.json names missing files: {', '.join(missing)}")
    total = sum(p.stat().st_size for p in HERE.rglob("*") if p.is_file())
    for name in names:
        print(f"{(HERE / name).stat().st_size / 1024:8.0f} KB  {name}")
    print(f"folder total {total / 1024 / 1024:.2f} MB (limit {SIZE_LIMIT // 1024 // 1024} MB)")
    if total > SIZE_LIMIT:
        sys.exit("the sample library is too big")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-videos", action="store_true",
                        help="keep the existing MP4s (rendering them takes minutes)")
    args = parser.parse_args()
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        sys.exit(f"missing tools: {', '.join(missing)} (see README.md)")
    with tempfile.TemporaryDirectory(prefix="shuqiao-sample-") as build:
        generate(Path(build), args.skip_videos)


if __name__ == "__main__":
    main()

"""The sample micro-lesson videos, drawn entirely with ffmpeg filters (no source footage).

Used by generate.py. Each lesson is a list of scenes made of coloured boxes, captions
(drawtext, with the same Noto CJK subsets that generate.py embeds in the PDFs) and one
animated drawing computed per pixel by ``geq`` (a pie cut into equal parts, or a tide
rolling up a river). A footer with
a running timecode and a progress bar is always visible, so a viewer can see at a glance
that playback and seeking work. The sound is a short sine melody, enough to prove the
audio track plays.

The drawing is computed at twice the size and scaled down with area averaging: that is
what antialiases its edges. ``geq`` writes a small class number per pixel (background,
fill, outline…) and ``lutrgb`` turns classes into colours, so the expression stays readable.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

WIDTH, HEIGHT, FPS = 640, 360, 25
# Like the platform's 360p rendition: H.264 Main + AAC-LC stereo 44.1 kHz. The bit rates
# put a ~45 s clip at 1-1.5 MB, a realistic size for testing Range requests and seeking.
VIDEO_BITRATE, AUDIO_BITRATE = "140k", "64k"
SUPERSAMPLE = 2
CLASS_STEP = 40  # geq writes class k as grey level k*40; lutrgb maps the bands to colours


@dataclass(frozen=True)
class Box:
    x: int
    y: int
    w: int
    h: int
    color: str
    start: float
    end: float


@dataclass(frozen=True)
class Caption:
    text: str
    start: float
    end: float
    y: int
    x: int | None = None  # None: centred
    size: int = 24
    color: str = "0x333333"
    font: str = "sans"  # a key of the fonts mapping given to render(): sans, bold, serif
    slide: bool = False  # slides in from the right instead of only fading in


@dataclass(frozen=True)
class Drawing:
    """An animated layer: ``expr`` gives a class per pixel from X, Y (layer pixels) and T."""
    expr: str
    x: int
    y: int
    w: int
    h: int
    palette: list[str]  # colour of class 0, 1, 2, …; class 0 must equal the paper colour
    active: tuple[float, float]  # geq runs only then; outside it the layer is plain paper


@dataclass
class Lesson:
    title: str
    duration: float
    paper: str
    accent: str
    drawing: Drawing
    boxes: list[Box] = field(default_factory=list)
    captions: list[Caption] = field(default_factory=list)
    melody: list[float] = field(default_factory=list)  # Hz, one note per beat, looped
    beat: float = 0.5
    pluck: bool = False  # plucked-string envelope (guzheng-like) instead of a soft swell


def _opt(value: str) -> str:
    """Quote a value for a filter option inside a filtergraph script.

    The graph parser strips the single quotes, the option parser then unescapes ``\\:``.
    """
    assert "'" not in value, value
    return "'" + value.replace("\\", "\\\\").replace(":", "\\:") + "'"


def _fade(start: float, end: float, ramp: float = 0.4) -> str:
    return f"clip(min((t-{start})/{ramp},({end}-t)/{ramp}),0,1)"


def _caption(c: Caption, fonts: dict[str, Path]) -> str:
    x = "(w-text_w)/2" if c.x is None else str(c.x)
    if c.slide:
        x = f"{x}+160*pow(clip(1-(t-{c.start})/0.6,0,1),2)"
    return (f"drawtext=fontfile={_opt(str(fonts[c.font]))}:expansion=none:text={_opt(c.text)}"
            f":fontsize={c.size}:fontcolor={c.color}:x={_opt(x)}:y={c.y}"
            f":alpha={_opt(_fade(c.start, c.end))}"
            f":enable={_opt(f'between(t,{c.start},{c.end})')}")


def _box(b: Box) -> str:
    return (f"drawbox=x={b.x}:y={b.y}:w={b.w}:h={b.h}:color={b.color}:t=fill"
            f":enable={_opt(f'between(t,{b.start},{b.end})')}")


def _palette_lut(palette: list[str]) -> str:
    """lutrgb options mapping grey bands (class*CLASS_STEP) to the palette colours."""
    channels = []
    for shift, name in ((16, "r"), (8, "g"), (0, "b")):
        values = [(int(colour, 16) >> shift) & 0xFF for colour in palette]
        expr = str(values[-1])
        for k in range(len(values) - 2, -1, -1):
            expr = f"if(lt(val,{k * CLASS_STEP + CLASS_STEP // 2}),{values[k]},{expr})"
        channels.append(f"{name}={_opt(expr)}")
    return "lutrgb=" + ":".join(channels)


def _melody(lesson: Lesson) -> str:
    notes = lesson.melody
    freq = str(notes[-1])
    for k in range(len(notes) - 2, -1, -1):
        freq = f"if(eq(ld(1),{k}),{notes[k]},{freq})"
    beat = lesson.beat
    if lesson.pluck:
        envelope = f"exp(-5*ld(0))*(1-exp(-90*ld(0)))*min(1,({beat}-ld(0))*40)"
    else:
        envelope = f"pow(sin(PI*ld(0)/{beat}),2)"
    # Start and end softly so the clip does not click when it starts or loops.
    master = f"0.3*min(1,t/0.5)*min(1,({lesson.duration}-t)/1.5)"
    setup = f"st(0,mod(t,{beat}));st(1,mod(floor(t/{beat}),{len(notes)}));st(2,{freq})"
    left = f"{setup};{master}*{envelope}*sin(2*PI*ld(2)*t)"
    # The right channel adds the lower octave: a real stereo pair, not a copy.
    right = f"{setup};{master}*{envelope}*(0.75*sin(2*PI*ld(2)*t)+0.3*sin(PI*ld(2)*t))"
    return (f"aevalsrc=exprs={_opt(left + '|' + right)}:s=44100"
            f":channel_layout=stereo:d={lesson.duration}")


def _footer(lesson: Lesson, fonts: dict[str, Path]) -> list[str]:
    total = round(lesson.duration)
    clock = (f"%{{eif:trunc(t/60):d:2}}:%{{eif:mod(trunc(t),60):d:2}}"
             f" / {total // 60:02d}:{total % 60:02d}")
    return [
        f"drawbox=x=0:y={HEIGHT - 24}:w={WIDTH}:h=24:color={lesson.accent}:t=fill",
        (f"drawtext=fontfile={_opt(str(fonts['sans']))}:expansion=none"
         f":text={_opt('书桥 · 示例微课 · ' + lesson.title)}:fontsize=14:fontcolor=white"
         f":x=12:y={HEIGHT - 20}"),
        (f"drawtext=fontfile={_opt(str(fonts['sans']))}:text={_opt(clock)}"
         f":fontsize=14:fontcolor=white:x=w-text_w-12:y={HEIGHT - 20}"),
    ]


def filtergraph(lesson: Lesson, fonts: dict[str, Path]) -> str:
    d, s = lesson.drawing, SUPERSAMPLE
    start, end = d.active
    size = f"{WIDTH}x{HEIGHT}"
    graph = [
        f"color=c={lesson.paper}:s={size}:r={FPS}:d={lesson.duration}[paper]",
        (f"color=c=black:s={d.w * s}x{d.h * s}:r={FPS}:d={lesson.duration},format=gray,"
         f"geq=lum={_opt(d.expr)}:enable={_opt(f'between(t,{start},{end})')},"
         f"format=rgb24,{_palette_lut(d.palette)},scale={d.w}:{d.h}:flags=area[drawing]"),
        f"color=c=0xF2B134:s={WIDTH}x3:r={FPS}:d={lesson.duration}[progress]",
        f"[paper][drawing]overlay=x={d.x}:y={d.y}[base]",
        "[base]" + ",".join([_box(b) for b in lesson.boxes]
                            + [_caption(c, fonts) for c in lesson.captions]
                            + _footer(lesson, fonts)) + "[framed]",
        (f"[framed][progress]overlay=x={_opt(f'-w+w*t/{lesson.duration}')}:y={HEIGHT - 27},"
         "format=yuv420p[v]"),
        _melody(lesson) + "[a]",
    ]
    return ";\n".join(graph) + "\n"


def texts(lesson: Lesson) -> str:
    """Every character drawn, so generate.py can include them in the font subsets."""
    return lesson.title + "".join(c.text for c in lesson.captions) + "书桥·示例微课0123456789:/ "


def render(lesson: Lesson, out: Path, poster: Path, workdir: Path,
           fonts: dict[str, Path]) -> None:
    """Encode the lesson to ``out`` (MP4) and a title-card frame to ``poster`` (JPEG).

    fonts maps the Caption font names (sans, bold, serif) to single-face font files.
    """
    script = workdir / (out.stem + ".filtergraph")
    script.write_text(filtergraph(lesson, fonts), encoding="utf-8")
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
         "-filter_complex_script", str(script), "-map", "[v]", "-map", "[a]",
         # One encoder thread: with frame threads x264's rate control was seen to give
         # different bytes on each run; the filters, not the encoder, take the time anyway.
         "-c:v", "libx264", "-threads", "1", "-profile:v", "main", "-preset", "slow",
         "-pix_fmt", "yuv420p",
         "-b:v", VIDEO_BITRATE, "-maxrate", "400k", "-bufsize", "800k",
         # A keyframe every 2 s keeps seeking snappy in a plain <video> element.
         "-g", str(2 * FPS), "-keyint_min", str(FPS), "-sc_threshold", "0",
         "-c:a", "aac", "-b:a", AUDIO_BITRATE, "-ar", "44100", "-ac", "2",
         # bitexact and no metadata: regenerating gives the same bytes, git sees no churn.
         "-map_metadata", "-1", "-fflags", "+bitexact", "-flags:v", "+bitexact",
         "-flags:a", "+bitexact", "-movflags", "+faststart", str(out)],
        check=True)
    # The poster is a frame of the title card, for tiles and the player's poster attribute.
    subprocess.run(
        ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-ss", "3", "-i", str(out),
         "-frames:v", "1", "-q:v", "6", "-map_metadata", "-1", "-fflags", "+bitexact",
         "-flags:v", "+bitexact", str(poster)],
        check=True)


# --- 数学 三年级上册 几分之一 -------------------------------------------------------------

def _piecewise(scenes: list[tuple[float, float]], values: list[str], default: str = "0") -> str:
    """An expression of T that takes values[i] while scene i is on screen."""
    expr = default
    for (start, end), value in reversed(list(zip(scenes, values))):
        expr = f"if(between(T,{start},{end}),{value},{expr})"
    return expr


def _pie_expr(scenes: list[tuple[float, float, int]], size: int, radius: int) -> str:
    """Classes: 0 paper, 1 white, 2 shaded part, 3 outline, 4 dividing line, 5 empty slot.

    Per scene: the circle grows in, dividing lines are drawn from the centre, one part is
    shaded with a clockwise sweep, then that part is pulled out of the circle.
    """
    s = SUPERSAMPLE
    windows = [(a, b) for a, b, _ in scenes]
    parts = _piecewise(windows, [str(n) for _, _, n in scenes], "2")
    grow = _piecewise(windows, [f"{radius * s}*min(1,(T-{a})/0.6)" for a, _, _ in scenes])
    lines = _piecewise(windows, [f"clip((T-{a + 1.2})/1.0,0,1)" for a, _, _ in scenes])
    sweep = _piecewise(windows, [f"clip((T-{a + 3})/1.5,0,1)" for a, _, _ in scenes])
    pull = _piecewise(windows, [f"{16 * s}*clip((T-{a + 6})/0.8,0,1)" for a, _, _ in scenes])
    centre, outline, half_line = size * s / 2, 2.5 * s, 1.6 * s
    k = CLASS_STEP
    # Registers: 0,1 pixel from centre; 2 angle of one part; 3 radius; 4 pull distance;
    # 5,6 pixel relative to the pulled part; 7,8 its polar coordinates (angle clockwise
    # from 12 o'clock, 0..2pi). The rest of the circle reuses 5,6 for its own polar form.
    return (
        f"st(0,X-{centre});st(1,Y-{centre});st(2,2*PI/({parts}));st(3,{grow});st(4,{pull});"
        "st(5,ld(0)-ld(4)*sin(ld(2)/2));st(6,ld(1)+ld(4)*cos(ld(2)/2));"
        "st(7,hypot(ld(5),ld(6)));st(8,atan2(ld(5),-ld(6)));st(8,ld(8)+2*PI*lt(ld(8),0));"
        "if(lt(ld(7),ld(3))*lt(ld(8),ld(2)),"
        f"if(gt(ld(7),ld(3)-{outline}),{3 * k},"
        f"if(lt(ld(7),ld(3)*({lines}))*(lt(ld(7)*sin(ld(8)),{half_line})"
        f"+lt(ld(7)*sin(ld(2)-ld(8)),{half_line})),{4 * k},"
        f"if(lt(ld(8),ld(2)*({sweep})),{2 * k},{k}))),"
        "st(5,hypot(ld(0),ld(1)));st(6,atan2(ld(0),-ld(1)));st(6,ld(6)+2*PI*lt(ld(6),0));"
        "if(gte(ld(5),ld(3)),0,"
        f"if(lt(ld(6),ld(2))*gt(ld(4),0),{5 * k},"
        f"if(gt(ld(5),ld(3)-{outline}),{3 * k},"
        f"if(lt(ld(5),ld(3)*({lines}))*lt(ld(5)*abs(sin(ld(6)-ld(2)*round(ld(6)/ld(2)))),"
        f"{half_line}),{4 * k},{k})))))"
    )


def _fraction(numerator: str, denominator: str, x: int, y: int, start: float, end: float,
              colour: str) -> tuple[list[Caption], list[Box]]:
    """A stacked fraction like the textbook writes it: numerator, bar, denominator."""
    captions = [Caption(numerator, start, end, y, x + 14, 44, colour, "bold"),
                Caption(denominator, start, end, y + 60, x + 14, 44, colour, "bold")]
    return captions, [Box(x, y + 54, 54, 4, colour, start + 0.2, end)]


def fractions_lesson() -> Lesson:
    paper, board, orange, ink = "0xFBF7EE", "0x2E5E4E", "0xE0812C", "0x333333"
    duration = 48.0
    scenes = [(6.0, 19.6, 2), (20.0, 33.6, 4), (34.0, 41.6, 8)]
    pie_size, pie_radius = 260, 100
    boxes = [Box(0, 0, WIDTH, HEIGHT, board, 0, 6),
             Box(0, 0, WIDTH, 52, board, 6, duration)]
    captions = [
        Caption("人教版 · 数学 · 三年级上册", 0.3, 6, 62, None, 22, "0xCFE8DA"),
        Caption("几分之一", 0.6, 6, 112, None, 72, "white", "bold"),
        Caption("第八单元　分数的初步认识", 1.0, 6, 212, None, 26, "white"),
        Caption("第一课时 · 微课", 1.4, 6, 256, None, 22, "0xF6C66B"),
    ]
    headings = ["一、分月饼：认识二分之一", "二、折一折：认识四分之一",
                "三、想一想：平均分成8份呢？", "四、小结"]
    for (start, end), heading in zip([s[:2] for s in scenes] + [(42.0, duration)], headings):
        captions.append(Caption(heading, start, end, 10, 24, 26, "white", "bold"))
    readings = {2: "二分之一", 4: "四分之一", 8: "八分之一"}
    for start, end, n in scenes:
        if n == 8:
            captions += [Caption("把一个月饼", start + 0.8, end, 84, 340, 26, ink, slide=True),
                         Caption("平均分成 8 份，", start + 1.4, end, 122, 340, 26, ink, slide=True),
                         Caption("每份是它的几分之一？", start + 2.4, end, 160, 340, 26, orange, slide=True)]
            fraction_at, reading_at = start + 4.2, start + 5.2
        else:
            captions += [Caption("把一个月饼", start + 0.8, end, 84, 340, 26, ink, slide=True),
                         Caption(f"平均分成 {n} 份，", start + 1.4, end, 122, 340, 26, ink, slide=True),
                         Caption("每份是它的", start + 4.6, end, 180, 340, 26, ink, slide=True)]
            fraction_at, reading_at = start + 5.2, start + 7.2
        # With 8 parts the question takes the fraction's usual place: put it lower right.
        x, y = (500, 148) if n != 8 else (560, 200)
        parts, bars = _fraction("1", str(n), x, y, fraction_at, end, orange)
        captions += parts
        boxes += bars
        captions.append(Caption(f"读作：{readings[n]}", reading_at, end, 276, 340, 26,
                                orange, "bold"))
    summary_start = 42.0
    captions += [
        Caption("把一个物体平均分成几份，", summary_start + 0.4, duration, 84, None, 30, ink),
        Caption("每份就是它的几分之一。", summary_start + 1.0, duration, 128, None, 30,
                orange, "bold"),
        Caption("← 分子", summary_start + 2.0, duration, 190, 330, 22, ink),
        Caption("← 分数线", summary_start + 2.4, duration, 228, 330, 22, ink),
        Caption("← 分母", summary_start + 2.8, duration, 262, 330, 22, ink),
        Caption("课后请完成学习任务单和课后练习。", summary_start + 3.4, duration, 304, None,
                18, "0x777777"),
    ]
    parts, bars = _fraction("1", "4", 252, 176, summary_start + 1.6, duration, orange)
    captions += parts
    boxes += bars
    drawing = Drawing(_pie_expr(scenes, pie_size, pie_radius), 60, 66, pie_size, pie_size,
                      [paper, "0xFFFFFF", "0xF4A340", "0x3B3B3B", "0xD9534F", "0xECE6D6"],
                      (scenes[0][0], scenes[-1][1]))
    c5, d5, e5, g5, a5, c6 = 523.25, 587.33, 659.26, 783.99, 880.0, 1046.5
    return Lesson("几分之一", duration, paper, board, drawing, boxes, captions,
                  melody=[c5, e5, g5, a5, g5, e5, d5, e5, g5, a5, c6, a5, g5, e5, d5, c5],
                  beat=0.4)


# --- 语文 四年级上册 观潮 -----------------------------------------------------------------

def _tide_expr(start: float, end: float) -> str:
    """Classes: 0 paper, 1 sky, 2 far bank, 3 calm river, 4 foam, 5 rough water, 6 spray.

    A thin white line appears where river meets sky, thickens into a wall of foam and rolls
    towards the viewer; behind it the water stays rough.
    """
    s, k = SUPERSAMPLE, CLASS_STEP
    progress = f"pow(clip((T-{start + 1})/10,0,1),1.4)"
    # Registers: 0,1 pixel in output units; 2 progress; 3 front line; 4 foam thickness.
    return (
        f"st(0,X/{s});st(1,Y/{s});st(2,{progress});"
        "st(3,36+ld(2)*124+(1.5+6*ld(2))*sin(ld(0)*0.045+T*3));st(4,2+22*ld(2));"
        f"if(not(between(T,{start},{end})),0,"
        f"if(lt(ld(1),26),{k},if(lt(ld(1),34),{2 * k},"
        f"if(lt(ld(1),ld(3)-ld(4)),"
        # Rough water: rows of short foam dashes, each row shifted, drifting with time.
        f"if(gt(sin(ld(0)*0.05+ld(1)*0.9-T*3),0.6)*lt(mod(ld(1),7),2.5),{6 * k},{5 * k}),"
        f"if(lt(ld(1),ld(3)),{4 * k},{3 * k})))))"
    )


def tide_lesson() -> Lesson:
    paper, blue, gold, ink = "0xF8F6F0", "0x1F4E79", "0xC0392B", "0x333333"
    duration = 45.0
    boxes = [Box(0, 0, WIDTH, HEIGHT, blue, 0, 6), Box(0, 0, WIDTH, 52, blue, 6, duration)]
    captions = [
        Caption("统编版 · 语文 · 四年级上册", 0.3, 6, 62, None, 22, "0xCFE0F0"),
        Caption("观潮", 0.6, 6, 104, None, 84, "white", "serif"),
        Caption("第一单元　第1课", 1.0, 6, 216, None, 26, "white"),
        Caption("第一课时 · 微课", 1.4, 6, 258, None, 22, "0xF6C66B"),
    ]
    scenes = [(6.0, 15.0, "学习目标"), (15.0, 22.0, "读一读：词语"),
              (22.0, 36.0, "想一想：潮来时的画面"), (36.0, duration, "理一理：课文的顺序")]
    for start, end, heading in scenes:
        captions.append(Caption(heading, start, end, 10, 24, 26, "white", "bold"))
    goals = ["1. 认识“潮、堤、阔”等生字，读准字音。",
             "2. 正确、流利地朗读课文。",
             "3. 边读边想象画面，感受大潮的雄伟壮观。"]
    for i, goal in enumerate(goals):
        captions.append(Caption(goal, 6.8 + 1.6 * i, 15.0, 96 + 60 * i, 60, 26, ink,
                                slide=True))
    words = ["天下奇观", "人山人海", "横贯江面", "浩浩荡荡", "山崩地裂"]
    for i, word in enumerate(words):
        row, col = divmod(i, 3)
        x = 60 + col * 180 + (90 if row else 0)
        y = 110 + row * 100
        appear = 15.6 + 1.0 * i
        boxes.append(Box(x, y, 160, 64, "0xE8EEF6", appear, 22.0))
        captions.append(Caption(word, appear, 22.0, y + 14, x + 24, 28, blue, "serif"))
    captions += [
        Caption("听：远处传来低沉的响声", 23.5, 29.5, 64, 40, 24, ink, slide=True),
        Caption("看：天边出现一道白线", 25.5, 29.5, 104, 40, 24, ink, slide=True),
        Caption("白线变成横贯江面的白墙", 29.6, 36.0, 64, 40, 24, ink, slide=True),
        Caption("浪涛声好像山崩地裂", 31.6, 36.0, 104, 40, 24, gold, "bold", slide=True),
    ]
    for i, stage in enumerate(["潮来前", "潮来时", "潮头过后"]):
        appear = 37.0 + 1.5 * i
        boxes.append(Box(50 + i * 200, 110, 140, 70, blue, appear, duration))
        captions.append(Caption(stage, appear, duration, 128, 50 + i * 200 + (140 - 28 * len(stage)) // 2,
                                28, "white", "serif"))
        if i:
            captions.append(Caption("→", appear, duration, 126, i * 200 + 2, 30, ink, "bold"))
    captions += [
        Caption("按时间顺序，边读边想象画面。", 41.5, duration, 222, None, 26, ink),
        Caption("课后请完成学习任务单。", 43.0, duration, 276, None, 18, "0x777777"),
    ]
    drawing = Drawing(_tide_expr(22.0, 36.0), 0, 150, WIDTH, 184,
                      [paper, "0xCFE6F5", "0x7FA86B", "0x4F8FC0", "0xF7FBFF", "0x6FA7D1",
                       "0xE3F0FA"], (22.0, 36.0))
    g4, a4, c5, d5, e5 = 392.0, 440.0, 523.25, 587.33, 659.26
    return Lesson("观潮", duration, paper, blue, drawing, boxes, captions,
                  melody=[g4, a4, c5, d5, e5, d5, c5, a4, g4, e5, d5, c5, a4, c5, g4, g4],
                  beat=0.6, pluck=True)


LESSONS = {
    "math-3a-fractions-1": fractions_lesson,
    "chinese-4a-guanchao-1": tide_lesson,
}

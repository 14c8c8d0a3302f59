"""Kiosk languages: Chinese first (zh-CN), English available.

Every user-facing string of the kiosk lives here as (zh-CN, en). Templates call
``_("key")``; a missing key fails loudly in tests instead of showing a raw key to a class.
Catalogue values (小学, 数学, 人教版) are data from the platform and stay as they are; for
the common taxonomy values an English gloss is shown after them in English mode.
"""

from __future__ import annotations

LANGUAGES = ("zh-CN", "en")

MESSAGES: dict[str, tuple[str, str]] = {
    "brand": ("书桥", "Shuqiao"),
    "tagline": ("校园离线课堂资源库", "Offline classroom library"),
    "home": ("首页", "Home"),
    "search": ("搜索", "Search"),
    "search_placeholder": ("搜索课本、课程、章节…", "Search textbooks, lessons, chapters…"),
    "search_results": ("“{q}”的搜索结果：{n} 个", "{n} results for “{q}”"),
    "no_results": ("没有找到相关资源。换个词试试，比如学科或课文名。",
                   "Nothing found. Try another word, such as a subject or lesson title."),
    "browse_all": ("全部资源", "All resources"),
    "stage": ("学段", "Stage"),
    "grade": ("年级", "Grade"),
    "subject": ("学科", "Subject"),
    "edition": ("版本", "Edition"),
    "volume": ("册次", "Volume"),
    "chapter": ("章节", "Chapter"),
    "lesson": ("课时", "Lesson"),
    "resources": ("资源", "Resources"),
    "count_resources": ("{n} 个资源", "{n} resources"),
    "choose": ("请选择{level}", "Choose a {level}"),
    "kind_textbook": ("电子教材", "Textbook"),
    "kind_lesson_package": ("课程包", "Lesson package"),
    "kind_video": ("微课视频", "Video"),
    "kind_courseware": ("课件", "Courseware"),
    "kind_lesson_plan": ("教学设计", "Lesson plan"),
    "kind_task_sheet": ("学习任务单", "Task sheet"),
    "kind_exercise": ("课后练习", "Exercises"),
    "kind_document": ("文档", "Document"),
    "kind_audio": ("音频", "Audio"),
    "kind_image": ("图片", "Image"),
    "ready": ("已在本机", "On this server"),
    "not_ready": ("尚未下载", "Not downloaded yet"),
    "not_ready_help": ("这个资源还没有下载到本校服务器，暂时无法打开。",
                       "This resource is not on the school server yet and cannot be opened."),
    "open_pdf": ("打开 PDF", "Open PDF"),
    "download": ("下载", "Download"),
    "video_unsupported": ("这台电脑的浏览器不能播放这个视频，可以点这里下载：",
                          "This browser cannot play the video. Download it here:"),
    "show_answer": ("查看答案", "Show answer"),
    "answer": ("答案", "Answer"),
    "explanation": ("解析", "Explanation"),
    "parts": ("课程内容", "Contents"),
    "language": ("English", "中文"),
    "admin": ("管理", "Admin"),
    "page_not_found": ("页面不存在", "Page not found"),
    "page_not_found_help": ("这个地址没有内容。请回到首页重新查找。",
                            "There is nothing at this address. Please start again from the home page."),
    "error_title": ("出错了", "Something went wrong"),
    "back_home": ("回到首页", "Back to home"),
    "footer": ("书桥 {version} · 本校服务器 {name}", "Shuqiao {version} · school server {name}"),
    # Admin
    "admin_title": ("书桥管理", "Shuqiao admin"),
    "setup_title": ("首次设置：管理员密码", "First run: set the admin password"),
    "setup_help": ("请为管理员设置密码。没有默认密码；请牢记这个密码。",
                   "Set the administrator password. There is no default password; keep it safe."),
    "setup_code": ("设置码", "Setup code"),
    "setup_code_help": ("设置码显示在服务器的控制台和日志里（运行 shuqiao serve 的窗口）。"
                        "在服务器本机上打开本页时不需要设置码。",
                        "The setup code is printed on the server's console and log (where "
                        "shuqiao serve runs). It is not needed when this page is opened on the "
                        "server itself."),
    "setup_code_wrong": ("设置码不对。请查看服务器控制台上显示的设置码。",
                         "Wrong setup code. Look at the code printed on the server's console."),
    "password": ("密码", "Password"),
    "password_again": ("再次输入密码", "Password again"),
    "password_rules": ("至少 8 个字符。", "At least 8 characters."),
    "password_short": ("密码至少需要 8 个字符。", "The password needs at least 8 characters."),
    "password_mismatch": ("两次输入的密码不一致。", "The two passwords differ."),
    "already_set_up": ("管理员密码已经设置过了。", "The admin password is already set."),
    "save": ("保存", "Save"),
    "login": ("登录", "Log in"),
    "logout": ("退出", "Log out"),
    "login_title": ("管理员登录", "Admin login"),
    "login_failed": ("密码不对。", "Wrong password."),
    "login_locked": ("尝试次数太多，请 {minutes} 分钟后再试。",
                     "Too many attempts. Try again in {minutes} minutes."),
    "csrf_failed": ("表单已过期或来源不明，请刷新页面后重试。",
                    "The form expired or did not come from this site. Reload the page and try again."),
    "health": ("运行状态", "Health"),
    "disk": ("磁盘", "Disk"),
    "memory": ("内存", "Memory"),
    "cpu": ("处理器", "CPU"),
    "uptime": ("运行时间", "Uptime"),
    "versions": ("版本", "Versions"),
    "counts": ("数量", "Counts"),
    "free_of": ("可用 {free}，共 {total}", "{free} free of {total}"),
    "process": ("书桥进程", "Shuqiao process"),
    "system": ("整机", "Whole machine"),
    "upload": ("上传资源", "Upload"),
    "upload_help": ("上传老师自己的课件、视频或文档，上传后全校终端都能打开。",
                    "Upload a teacher's own courseware, video or document; every terminal in "
                    "the school can then open it."),
    "file": ("文件", "File"),
    "title": ("标题", "Title"),
    "kind": ("类型", "Kind"),
    "optional": ("可不填", "optional"),
    "upload_done": ("已上传：{title}", "Uploaded: {title}"),
    "upload_no_file": ("请选择要上传的文件。", "Choose a file to upload."),
    "upload_too_big": ("文件太大（上限 {mb} MB）。", "The file is too large (limit {mb} MB)."),
    "disk_low": ("服务器磁盘空间不足，无法保存。", "The server is low on disk space."),
    "events": ("使用记录", "Usage events"),
    "pending": ("待上传", "pending"),
    "instance": ("服务器编号", "Server id"),
    "address": ("访问地址", "Address"),
}

# English glosses for common taxonomy values, shown in English mode after the Chinese.
GLOSSES = {
    "小学": "Primary", "初中": "Junior secondary", "高中": "Senior secondary",
    "特殊教育": "Special education",
    "一年级": "Grade 1", "二年级": "Grade 2", "三年级": "Grade 3", "四年级": "Grade 4",
    "五年级": "Grade 5", "六年级": "Grade 6", "七年级": "Grade 7", "八年级": "Grade 8",
    "九年级": "Grade 9",
    "语文": "Chinese", "数学": "Mathematics", "英语": "English", "科学": "Science",
    "道德与法治": "Morality and law", "物理": "Physics", "化学": "Chemistry",
    "生物学": "Biology", "历史": "History", "地理": "Geography", "音乐": "Music",
    "美术": "Art", "体育与健康": "PE and health", "信息技术": "IT",
    "上册": "Vol. 1", "下册": "Vol. 2", "全一册": "Single volume",
}


def translate(key: str, lang: str, **values) -> str:
    zh, en = MESSAGES[key]
    text = en if lang == "en" else zh
    return text.format(**values) if values else text


def gloss(value: str, lang: str) -> str:
    """A taxonomy value for display: Chinese always, plus an English gloss in English mode."""
    if lang == "en" and value in GLOSSES:
        return f"{value} · {GLOSSES[value]}"
    return value

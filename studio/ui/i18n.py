"""English and Simplified Chinese for the studio, following the browser's language.

Component labels go through ``gr.I18n`` (translated in the browser). Messages
the server writes (submit results, model downloads) are translated here from
the request's ``Accept-Language``, and the Queue view's script gets the ``q_``
keys as JSON.
"""

from __future__ import annotations

import gradio as gr

EN: dict[str, str] = {
    "title": "Fusion Studio",
    "tab_create": "Create",
    "tab_queue": "Queue",
    "tab_models": "Models",
    "tab_system": "System",
    # create
    "sources": "Source face image(s)",
    "source_faces": "Faces found in the sources (the largest of each is used)",
    "targets": "Target image(s) or video(s): several targets make a batch",
    "target_faces": "Faces in the first target (pick one for the 'reference' selector)",
    "group_swapper": "Swapper",
    "swapper": "Swapper",
    "detector": "Face detector",
    "group_faces": "Which faces",
    "selector": "Face selector",
    "reference_distance": "Reference match distance",
    "reference_picked": "Reference face",
    "group_mask": "Mask and blending",
    "mask_blur": "Mask blur",
    "mask_padding": "Mask padding",
    "color_correction": "Colour correction",
    "blend_mode": "Blend mode",
    "group_enhancer": "Face enhancer",
    "enhancer": "Enhancer",
    "enhancer_blend": "Enhancer blend",
    "group_output": "Output",
    "quality": "Image quality",
    "video_codec": "Video codec",
    "container": "Video container",
    "crf": "Video quality (CRF, lower is better)",
    "preset": "Encoder preset",
    "priority": "Priority (higher runs first)",
    "submit": "Submit",
    "consent": "I confirm I have the right to use the faces in these files "
    "(my own, or with the consent of the people shown).",
    "msg_no_consent": "Confirm that you have the right to use these faces before submitting.",
    "tab_verify": "Verify",
    "verify_intro": "Drop an image or video to check its provenance marks: the invisible "
    "watermark, the synthetic-media metadata and the C2PA manifest.",
    "verify_file": "File to check",
    "msg_submitted": "Submitted {count} job(s). Follow them in the Queue tab.",
    "msg_batch": "Batch {batch}",
    "msg_error": "Not submitted: {error}",
    "msg_partial": "{ok} job(s) submitted, {failed} refused:",
    "msg_no_sources": "Add at least one source face image.",
    "msg_no_targets": "Add at least one target image or video.",
    "msg_no_faces": "No face found in this image.",
    "msg_reference": "Reference: face {index} of the first target (selector set to 'reference').",
    # models
    "models_table": "Models",
    "model_pick": "Model to download",
    "model_download": "Download",
    "model_refresh": "Refresh",
    "msg_downloaded": "{name} is installed.",
    "msg_download_failed": "Download of {name} failed: {error}",
    "msg_operator_only": "Only the operator of this server can download models "
    "(log in, or use an admin key: python app.py keys create NAME --admin).",
    "col_name": "Model",
    "col_kind": "Kind",
    "col_state": "State",
    "col_size": "Size (MB)",
    "col_license": "Licence",
    # system
    "system_refresh": "Refresh",
    "sys_devices": "Devices",
    "sys_device": "Device",
    "sys_slots": "Slots",
    "sys_busy": "Busy",
    "sys_free": "Free",
    "sys_queue": "Queue depth",
    "sys_jobs": "Jobs per status",
    "sys_disk": "Disk used by jobs",
    # queue view (the script reads the q_ keys)
    "q_empty": "No jobs yet. Submit one in the Create tab.",
    "q_loading": "Loading your jobs…",
    "q_offline": "Connection lost; reconnecting…",
    "q_stage": "Stage",
    "q_fps": "fps",
    "q_eta": "ETA",
    "q_attempt_of": "Attempt {n} of {max}",
    "q_failed_attempts": "Failed attempts: {n}",
    "q_priority": "Priority",
    "q_cancel": "Cancel",
    "q_retry": "Retry",
    "q_delete": "Delete",
    "q_up": "Move up",
    "q_down": "Move down",
    "q_download": "Download",
    "q_share": "Share link",
    "q_share_done": "Share link (valid {hours} h) copied:",
    "q_batch": "Batch",
    "q_batch_zip": "Download all (zip)",
    "q_batch_progress": "{done} of {total} done",
    "q_confirm_delete": "Delete this job and its files?",
    "q_status_queued": "waiting for a free slot",
    "q_status_running": "working",
    "q_status_succeeded": "done",
    "q_status_failed": "failed",
    "q_status_canceled": "canceled",
}

ZH: dict[str, str] = {
    "title": "Fusion Studio 换脸工作室",
    "tab_create": "创建",
    "tab_queue": "队列",
    "tab_models": "模型",
    "tab_system": "系统",
    "sources": "源人脸图片（可多张）",
    "source_faces": "源图片中检测到的人脸（每张取最大的一张脸）",
    "targets": "目标图片或视频：多个目标将组成一个批次",
    "target_faces": "第一个目标中的人脸（为“参考”选择器选择一张）",
    "group_swapper": "换脸模型",
    "swapper": "换脸模型",
    "detector": "人脸检测器",
    "group_faces": "替换哪些人脸",
    "selector": "人脸选择方式",
    "reference_distance": "参考人脸匹配距离",
    "reference_picked": "参考人脸",
    "group_mask": "蒙版与融合",
    "mask_blur": "蒙版模糊",
    "mask_padding": "蒙版边距",
    "color_correction": "颜色校正",
    "blend_mode": "融合方式",
    "group_enhancer": "人脸增强",
    "enhancer": "增强模型",
    "enhancer_blend": "增强混合比例",
    "group_output": "输出",
    "quality": "图片质量",
    "video_codec": "视频编码",
    "container": "视频封装格式",
    "crf": "视频质量（CRF，越小越好）",
    "preset": "编码预设",
    "priority": "优先级（越高越先运行）",
    "submit": "提交",
    "consent": "我确认我有权使用这些文件中的人脸（本人的，或已获得其中人物的同意）。",
    "msg_no_consent": "提交前请确认您有权使用这些人脸。",
    "tab_verify": "验证",
    "verify_intro": "拖入图片或视频，检查其来源标记：隐形水印、合成媒体元数据和 C2PA 清单。",
    "verify_file": "要检查的文件",
    "msg_submitted": "已提交 {count} 个任务，请在“队列”标签页查看进度。",
    "msg_batch": "批次 {batch}",
    "msg_error": "未提交：{error}",
    "msg_partial": "已提交 {ok} 个任务，{failed} 个被拒绝：",
    "msg_no_sources": "请至少添加一张源人脸图片。",
    "msg_no_targets": "请至少添加一个目标图片或视频。",
    "msg_no_faces": "这张图片中没有找到人脸。",
    "msg_reference": "参考：第一个目标中的第 {index} 张脸（选择器已设为“reference”）。",
    "models_table": "模型",
    "model_pick": "要下载的模型",
    "model_download": "下载",
    "model_refresh": "刷新",
    "msg_downloaded": "{name} 已安装。",
    "msg_download_failed": "{name} 下载失败：{error}",
    "msg_operator_only": "只有本服务器的管理员可以下载模型"
    "（请登录，或使用管理员密钥：python app.py keys create NAME --admin）。",
    "col_name": "模型",
    "col_kind": "类型",
    "col_state": "状态",
    "col_size": "大小（MB）",
    "col_license": "许可证",
    "system_refresh": "刷新",
    "sys_devices": "设备",
    "sys_device": "设备",
    "sys_slots": "槽位",
    "sys_busy": "忙碌",
    "sys_free": "空闲",
    "sys_queue": "排队任务数",
    "sys_jobs": "各状态任务数",
    "sys_disk": "任务占用磁盘",
    "q_empty": "还没有任务。请在“创建”标签页提交。",
    "q_loading": "正在加载任务…",
    "q_offline": "连接中断，正在重新连接…",
    "q_stage": "阶段",
    "q_fps": "帧/秒",
    "q_eta": "剩余时间",
    "q_attempt_of": "第 {n} 次尝试（共 {max} 次）",
    "q_failed_attempts": "失败尝试：{n}",
    "q_priority": "优先级",
    "q_cancel": "取消",
    "q_retry": "重试",
    "q_delete": "删除",
    "q_up": "上移",
    "q_down": "下移",
    "q_download": "下载",
    "q_share": "分享链接",
    "q_share_done": "分享链接（{hours} 小时内有效）已复制：",
    "q_batch": "批次",
    "q_batch_zip": "全部下载（zip）",
    "q_batch_progress": "已完成 {done} / {total}",
    "q_confirm_delete": "删除此任务及其文件？",
    "q_status_queued": "等待空闲槽位",
    "q_status_running": "处理中",
    "q_status_succeeded": "已完成",
    "q_status_failed": "失败",
    "q_status_canceled": "已取消",
}

LANGUAGES = {"en": EN, "zh-CN": ZH}
I18N = gr.I18n(en=EN, **{"zh-CN": ZH, "zh": ZH})


def t(key: str) -> gr.i18n.I18nData:
    """A label translated in the browser."""
    return I18N(key)


def language(accept_language: str | None) -> str:
    """``zh-CN`` for a browser that prefers Chinese, else ``en``."""
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return "en"


def text(lang: str, key: str, **values) -> str:
    """A server-side message in ``lang``."""
    template = LANGUAGES.get(lang, EN).get(key) or EN[key]
    return template.format(**values)


def queue_strings() -> dict[str, dict[str, str]]:
    """The Queue view's strings, for its script."""
    return {
        lang: {k: v for k, v in table.items() if k.startswith("q_")}
        for lang, table in LANGUAGES.items()
    }

"""zh-CN for con-op2: background builds with stages, resumable uploads."""

ZH = {
    "build_not_found": "本产品没有构建 “{build}”；请在产品的“上传与构建”页面重新发起构建。",
    "build_interrupted": "构建未完成即已停止（服务器重启或被停止）；请重新发起构建。",
    "build_failed": "构建因系统内部原因失败，未保存任何内容；请重新发起构建，或联系运营团队。",
    "upload_session_not_found": "贵机构没有可续传的上传 “{session}”；请重新选择文件，从头开始上传。",
    "upload_offset_mismatch": (
        "服务器已收到本次上传的 {offset} 字节，而不是 {start} 字节；请从第 {offset} 字节继续上传。"
    ),
    "upload_range_invalid": (
        "每个分片须带 Content-Range 请求头 “bytes START-END/{size}”，且范围须在文件的 {size} 字节之内。"
    ),
    "upload_size_invalid": "开始可续传上传时，请给出文件大小（字节数，1 字节至 {limit_gib} GiB）。",
    "Waiting to start": "等待开始",
    "Reading the upload": "读取上传文件",
    "Cleaning: types and value rules": "清洗：类型与取值规则",
    "Desensitising and writing Parquet": "脱敏并写入 Parquet",
    "Statistics and quality report": "统计与质量报告",
    "Saving the version": "保存版本",
    "Done": "完成",
    "Drop a CSV or Parquet file here, or choose one. Large files are sent in parts, never loaded into the browser's "
    "memory; an interrupted upload resumes where it stopped.": (
        "将 CSV 或 Parquet 文件拖放到此处，或选择文件。大文件分片发送，不会整体载入浏览器内存；上传中断后从中断处继续。"
    ),
    "Running: %(stage)s": "进行中：%(stage)s",
    "Done: version %(number)s was built and audited.": "完成：版本 %(number)s 已构建并完成审计。",
    "The build failed.": "构建失败。",
    "Building the next version": "正在构建下一个版本",
    "%(table)s: %(done)s of %(total)s rows": "%(table)s：已处理 %(done)s / %(total)s 行",
    "Open the version: audit findings and quality": "查看该版本：审计发现与质量报告",
    "Back to upload and build": "返回上传与构建",
    "Refresh": "刷新",
}

"""zh-CN translations of the differential-privacy branch's messages (scripts/translate.py)."""

ZH = {
    "dp_unsupported": "{construct}无法在本产品上以差分隐私方式回答；{instead}",
    "privacy_budget_exhausted": (
        "本次查询将消耗 epsilon {cost}，但{scope}仅剩 epsilon {left}；请减少消耗（在请求中设置更小的"
        "\u201cepsilon\u201d，或重复此前的查询，重复查询不消耗预算），或在更新的版本上申请新的协议。"
    ),
    "privacy_epsilon_out_of_range": (
        "epsilon {epsilon} 超出本方案的限额；单次查询请选择 {low} 至 {high} 之间的 epsilon。"
    ),
    "not_dp_product": (
        "产品“{slug}”返回精确结果（阈值模式），“epsilon”和“dry_run”不适用；请去掉这两个字段后再发送查询。"
    ),
    "dp_required": (
        "隐私单元为{reason}的产品必须使用差分隐私；请将保护策略的“mode”设为“dp”并填写“dp”参数，然后上传新版本。"
    ),
    "dp_required_by_authorisation": (
        "运营主体的授权要求对“{what}”使用差分隐私；请将保护策略的“mode”设为“dp”并填写“dp”参数，然后上传新版本。"
    ),
    "Differentially private answer: every figure carries random noise. This query spent epsilon %(cost)s "
    "of the agreement's privacy budget; epsilon %(left)s is left.": (
        "差分隐私结果：每个数值都含有随机噪声。本次查询消耗了协议隐私预算中的 epsilon %(cost)s；剩余 epsilon %(left)s。"
    ),
    "Error bounds (95 percent)": "误差范围（95% 置信）",
    "the agreement's privacy budget": "本协议的隐私预算",
    "the product version's privacy cap across all agreements": "该产品版本在所有协议中的隐私预算上限",
    "a natural person": "自然人",
    "A join": "表连接（JOIN）",
    "query one table at a time; DP mode bounds each unit's rows in one table.": (
        "请每次只查询一张表；差分隐私模式在单张表内限制每个隐私单元的行数。"
    ),
    "filter rows with WHERE on dimensions, and filter the noisy groups yourself.": (
        "请用 WHERE 按维度筛选行，含噪声的分组请自行筛选。"
    ),
    "GROUP BY an expression": "按表达式分组（GROUP BY）",
    "GROUP BY dimension columns as they are.": "请直接按维度列分组（GROUP BY）。",
    "GROUP BY with more than 10,000 public key combinations": "公开键组合超过 10,000 个的分组（GROUP BY）",
    "group by fewer dimensions, or filter some of them.": "请按更少的维度分组，或对其中部分维度进行筛选。",
    "write count(*) or count(DISTINCT <privacy unit>).": "请写 count(*) 或 count(DISTINCT <隐私单元>)。",
    "select count(*), count(DISTINCT <privacy unit>), sum(<measure>) or avg(<measure>) on their own; "
    "compute ratios or spreads from the noisy answer.": (
        "请单独选择 count(*)、count(DISTINCT <隐私单元>)、sum(<度量>) 或 avg(<度量>)；"
        "比率或离散程度请根据含噪声的结果自行计算。"
    ),
    "select group keys and aggregates only.": "请只选择分组键和聚合值。",
    "order by output columns, by name or position.": "请按输出列的名称或位置排序。",
}

"""zh-CN translations of the dp2 branch's messages: privacy fee caps, selection delta, budget notices."""

ZH = {
    "privacy_delta_exhausted": (
        "本次查询的分组需通过带噪阈值，将消耗 delta {cost}，但{scope}仅剩 delta {left}；请按带公开取值的维度分组"
        "（其分组无需阈值，不消耗 delta），或重复此前的查询（免费），或在更新的版本上申请新的协议。"
    ),
    "privacy_budget_subject": "协议 {agreement}：隐私预算已使用 {threshold}%",
    "privacy_budget_body": (
        "协议 {agreement}（产品 {product}）已消耗 epsilon {spent}，其全期隐私预算为 epsilon {budget}"
        "（{threshold}% 阈值）。同一数据上的预算不会恢复：请重复此前的查询（免费）、降低单次查询的 epsilon，"
        "或申请使用更新的版本。"
    ),
    "privacy_cap_subject": "{product} 第 {version} 版：隐私上限已使用 {threshold}%",
    "privacy_cap_body": (
        "在全部协议中，{product} 第 {version} 版已消耗 epsilon {spent}，监管部门设定的上限为 epsilon {budget}"
        "（{threshold}% 阈值）。上限用尽后任何买方都无法再查询此版本；新数据需作为新版本提交，并按其自身上限审核。"
    ),
    "{amount} per 0.1 ε": "每 0.1 ε {amount}",
    "DP queries": "差分隐私查询数",
    "rho spent": "已消耗 rho",
    "epsilon of budget": "已消耗 epsilon / 预算",
    "Privacy budget spent": "已消耗的隐私预算",
    "Per 0.1 ε (privacy fee)": "每 0.1 ε（隐私费）",
    "Per 0.1 ε (yuan; empty: the zone's cap)": "每 0.1 ε（元；留空则适用领域上限）",
}

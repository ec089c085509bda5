"""The Simplified Chinese words officials read on the board and in reports: states, clocks,
roles, and the figures with their definitions (the 三率)."""

from __future__ import annotations

STATE_NAMES = {"submitted": "待派单", "dispatched": "待签收", "accepted": "办理中", "returned": "已退回",
               "suspended": "挂起", "replied": "已答复", "escalated": "已上报", "closed": "已办结",
               "withdrawn": "已撤回"}
SLA_NAMES = {"overdue": "超期", "due_soon": "临期", "on_time": "正常", "paused": "暂停", "none": "—"}
CLOCK_NAMES = {"accept": "签收时限", "resolve": "办结时限", "follow_up": "回访时限"}
DEADLINE_NAMES = {"accept_due": "签收截止", "resolve_due": "办结截止", "follow_up_due": "回访截止", "due_at": "截止"}
# Every event type's name as officials say it (docs/events.md lists the same).
EVENT_NAMES = {
    "AppealSubmitted": "受理", "AppealDispatched": "派单", "AppealAccepted": "签收", "AppealReturned": "退回",
    "AppealTransferred": "转办", "MaterialsRequested": "补充材料", "MaterialsSupplied": "材料补齐",
    "ExtensionRequested": "延期申请", "ExtensionGranted": "同意延期", "ExtensionDenied": "不同意延期",
    "AppealEscalated": "上报", "UpperLevelReplied": "上级答复", "AppealReplied": "答复", "AppealClosed": "办结",
    "FeedbackReceived": "评价", "AppealReopened": "重办", "Urged": "催办", "SlaWarning": "临期预警",
    "SlaBreached": "超期", "SupervisionOpened": "督办", "SlaPolicyApplied": "时限政策调整",
    "SlaCalendarRevised": "日历修订", "PersonalDataErased": "个人信息删除", "RoutingSuggested": "智能分拨建议",
}
# A refusal as the board says it: the error code, the field, and the rule broken (one place).
ERROR_NAMES = {"invalid_input": "输入有误", "unauthorized": "未登录或密钥无效", "forbidden": "无权进行此操作",
               "not_found": "未找到", "invalid_state": "案件当前状态不允许此操作", "conflict": "案件已被他人更新，请刷新后重试",
               "idempotency_mismatch": "重复提交的内容不一致", "too_large": "内容过长", "calendar_unknown": "工作日历未覆盖该日期",
               "unavailable": "系统暂时不可用，请稍后重试"}
FIELD_NAMES = {"reason": "原因", "note": "说明", "department": "部门", "content": "内容", "csrf": "页面已过期",
               "type": "操作", "outcome": "办结结果", "rating": "评价", "working_days": "延期天数"}
_PROBLEMS = (("must not be empty", "不能为空"), ("is required", "必须填写"), ("is already the assigned department",
             "已是当前承办单位"), ("longer than", "超过长度限制"), ("unknown value", "不在可选范围内"))


def refusal(code: str, message: str, field: str | None) -> str:
    """The Chinese sentence for a refusal of the command path (code, message, details.field)."""
    head = ERROR_NAMES.get(code, "操作未完成")
    problem = next((zh for en, zh in _PROBLEMS if en in message), "")
    if field:
        return f"{head}：{FIELD_NAMES.get(field, field)}{problem}"
    return head


# The step bar of a case page: each step and the event that reaches it (the first one).
STEPS = (("受理", "AppealSubmitted"), ("派单", "AppealDispatched"), ("签收", "AppealAccepted"),
         ("答复", "AppealReplied"), ("办结", "AppealClosed"), ("评价", "FeedbackReceived"))
CHANNEL_NAMES = {"hotline": "热线", "web": "网站", "app": "移动端", "visit": "上门问需", "symposium": "座谈会",
                 "workstation": "服务站", "leader_visit": "领导走访", "letter": "来信", "upper_level": "上级转办",
                 "evaluation": "一键测评"}
RATING_NAMES = {"satisfied": "满意", "basically_satisfied": "基本满意", "unsatisfied": "不满意"}
ROLE_NAMES = {"intake": "受理", "dispatcher": "派单员", "department": "承办单位", "enterprise": "企业",
              "auditor": "审计", "admin": "管理员", "system": "系统"}
# Each rate of the figures (suqiu.projections.queries.RANKED), its name and what it counts.
RATE_NAMES = {"response_rate": "响应率", "on_time_rate": "按时答复率", "resolution_rate": "解决率",
              "satisfaction_rate": "满意率", "reopen_rate": "重办率"}
DEFINITIONS = {
    "响应率": ("派单、转办、重办后在签收时限内签收或退回的件数 ÷ 应响应件数；应响应件数为已响应或已过签收时限的派单件数，"
            "不含签收时限前被转办、撤回、办结的派单，也不含机构改革中由系统转办的派单；按派单日期计入期间"),
    "按时答复率": "在办结时限内答复的件数 ÷ 期间内全部答复件数（无论是否已办结）；按答复日期计入",
    "解决率": "办结结果为已解决的件数 ÷ 有效办结件数（已解决、已解释、无法解决；不含撤回、重复件）；按办结日期计入",
    "满意率": "评价为满意或基本满意的件数 ÷ 全部评价件数；按评价日期计入",
    "重办率": "有效办结后被重办的件数 ÷ 有效办结件数",
    "办理时长": "从派单到答复的工作时长（工作小时，按工作日历计算）的中位数与第 90 百分位；按答复日期计入",
    "超期": "运行中的时限已过截止时间，或已记录超期（SlaBreached）",
    "督办": "对超期件发起的督办（SupervisionOpened），办结或撤回后解除",
    "期间": "日期按北京时间（Asia/Shanghai）计；比率无分母时显示为“—”",
}

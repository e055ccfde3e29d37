"""OCF meta-data XML, rendered from an agent's declaration (pha.ocf.Agent).

An agent's meta-data action imports this module; its other actions never do.
Agents whose declaration uses nothing OCF 1.1 added also get the OCF 1.0
DOCTYPE, so resource-agents' ocf-tester can check them.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pha.ocf import Action, Agent, Param, Value

OCF_VERSION = "1.1"
# Action names the OCF 1.0 DTD (resource-agents' ra-api-1.dtd) knows.
OCF10_ACTIONS = frozenset({"start", "stop", "recover", "monitor", "restart", "migrate_to",
                           "migrate_from", "promote", "demote", "notify", "status", "reload",
                           "meta-data", "usage", "methods", "validate-all"})


def ocf10_compatible(agent: Agent) -> bool:
    """Whether the declaration uses nothing OCF 1.1 added (select, reloadable,
    unique-group, deprecated, reload-agent), so its meta-data also conforms
    to the OCF 1.0 DTD that resource-agents' ocf-tester checks."""
    return (all(a.name in OCF10_ACTIONS for a in agent.actions)
            and not any(p.type == "select" or p.reloadable or p.unique_group or p.deprecated
                        for p in agent.params))


def render(agent: Agent) -> str:
    """OCF 1.1 meta-data XML for `agent`."""
    doctype = ['<!DOCTYPE resource-agent SYSTEM "ra-api-1.dtd">'] if ocf10_compatible(agent) else []
    out = [
        '<?xml version="1.0"?>',
        *doctype,
        f'<resource-agent name="{_x(agent.name)}" version="{_x(agent.version)}">',
        f"<version>{OCF_VERSION}</version>",
        f'<longdesc lang="en">{_x(agent.longdesc)}</longdesc>',
        f'<shortdesc lang="en">{_x(agent.shortdesc)}</shortdesc>',
        "<parameters>",
    ]
    for p in agent.params:
        out.extend(_param_xml(p))
    out.append("</parameters>")
    out.append("<actions>")
    for a in agent.actions:
        out.append(_action_xml(a))
    out.append("</actions>")
    out.append("</resource-agent>")
    return "\n".join(out) + "\n"


def _x(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace('"', "&quot;")


def _param_xml(p: Param) -> list[str]:
    attrs = f' name="{_x(p.name)}" required="{int(p.required)}" unique="{int(p.unique)}"'
    if p.unique_group:
        attrs += f' unique-group="{_x(p.unique_group)}"'
    if p.reloadable:
        attrs += ' reloadable="1"'
    lines = [f"<parameter{attrs}>",
             f'<longdesc lang="en">{_x(p.longdesc or p.shortdesc)}</longdesc>',
             f'<shortdesc lang="en">{_x(p.shortdesc)}</shortdesc>']
    if p.deprecated:
        lines.append("<deprecated>")
        lines.extend(f'<replaced-with name="{_x(r)}"/>' for r in p.replaced_with)
        lines.append("</deprecated>")
    default = "" if p.default is None else f' default="{_x(_render(p.default))}"'
    if p.type == "select":
        lines.append(f'<content type="select"{default}>')
        lines.extend(f'<option value="{_x(o)}"/>' for o in p.options)
        lines.append("</content>")
    else:
        lines.append(f'<content type="{p.type}"{default}/>')
    lines.append("</parameter>")
    return lines


def _action_xml(a: Action) -> str:
    attrs = f'name="{_x(a.name)}" timeout="{a.timeout}s"'
    if a.interval is not None:
        attrs += f' interval="{a.interval}s"'
    if a.depth is not None:
        attrs += f' depth="{a.depth}"'
    if a.start_delay is not None:
        attrs += f' start-delay="{a.start_delay}s"'
    if a.role is not None:
        attrs += f' role="{a.role}"'
    return f"<action {attrs}/>"


def _render(value: Value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)

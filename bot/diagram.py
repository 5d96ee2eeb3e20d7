"""Draw ``flow.RULES`` as a Mermaid state diagram, so the README never drifts from it."""

from __future__ import annotations

from collections import defaultdict

from bot.flow import RULES, State


def mermaid() -> str:
    """One arrow per change of state, labelled with the events (clock ticks included)."""
    edges: dict[tuple[State, State], list[str]] = defaultdict(list)
    for (state, event_type), rule in RULES.items():
        for target in sorted(rule.leads_to, key=list(State).index):
            if target is not state:
                edges[(state, target)].append(event_type.__name__)
    lines = ["stateDiagram-v2", f"    [*] --> {State.IDLE.value}"]
    for (source, target), labels in edges.items():
        lines.append(f"    {source.value} --> {target.value}: {', '.join(labels)}")
    return "\n".join(lines) + "\n"

"""The agent's trace events as one human-readable line each: the one rendering that the CLI's trace
and the chat's streamed progress both show."""

from __future__ import annotations

from agent.state import CitationRemovedEvent, InspectEvent, ReflectEvent, RouteEvent, SearchEvent


def describe_event(event: object) -> str:
    """One human-readable line for an agent step ('' for events that are not progress)."""
    if isinstance(event, RouteEvent):
        if not event.retrieval:
            return "Answering without searching the textbooks."
        where = f" in {', '.join(event.organ_systems)}" if event.organ_systems else ""
        count = len(event.queries)
        return f"Planning ({'model' if event.by == 'model' else 'rules'}): {count} search{'es' if count != 1 else ''}{where}."
    if isinstance(event, SearchEvent):
        image = " (with the image)" if event.used_image else ""
        if event.error:
            return f"Searching: {event.query}{image} → failed ({event.error})"
        count = len(event.hits)
        return f"Searching: {event.query}{image} → {count} page{'s' if count != 1 else ''}"
    if isinstance(event, InspectEvent):
        if not event.pages:
            return "No new pages to read."
        zoomed = f", zoomed into {ref_ranges(event.zoomed)}" if event.zoomed else ""
        verdict = "; the evidence suffices" if event.sufficient else ""
        return f"Reading pages {ref_ranges(event.pages)}{zoomed}{verdict}."
    if isinstance(event, ReflectEvent):
        if event.next_queries:
            count = len(event.next_queries)
            return f"Searching again: {count} new quer{'ies' if count != 1 else 'y'}."
        return f"Done searching: {event.stop_reason}." if event.stop_reason else ""
    if isinstance(event, CitationRemovedEvent):
        return f"Removed citation {event.citation}: {event.reason}."
    return ""


def ref_ranges(refs: list[str]) -> str:
    """'P1-P4, P7' for P1, P2, P3, P4, P7 (refs that are not P<number> are listed as they are)."""
    parts: list[str] = []
    run: list[int] = []

    def flush() -> None:
        if run:
            parts.append(f"P{run[0]}" if len(run) == 1 else f"P{run[0]}-P{run[-1]}")
            run.clear()

    for ref in refs:
        number = ref[1:] if ref[:1] == "P" else ""
        if number.isdigit():
            if run and int(number) != run[-1] + 1:
                flush()
            run.append(int(number))
        else:
            flush()
            parts.append(ref)
    flush()
    return ", ".join(parts)

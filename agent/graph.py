"""The agent's graph: route -> retrieve -> inspect -> reflect -> (retrieve again | answer)."""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from agent import nodes
from agent.state import AgentState


def needs_retrieval(state: AgentState) -> str:
    return "retrieve" if state["retrieval"] else "answer"


def can_inspect(state: AgentState) -> str:
    # Evidence-only mode (no model, or the model failed): the retrieved pages are the answer.
    return "inspect" if state["model_ok"] else "answer"


def search_again(state: AgentState) -> str:
    return "answer" if state["stop_reason"] else "retrieve"


def build_graph(checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    graph = StateGraph(AgentState, context_schema=nodes.RunContext)
    graph.add_node("route", nodes.route)
    graph.add_node("retrieve", nodes.retrieve)
    graph.add_node("inspect", nodes.inspect)
    graph.add_node("reflect", nodes.reflect)
    graph.add_node("answer", nodes.answer)
    graph.add_edge(START, "route")
    graph.add_conditional_edges("route", needs_retrieval, ["retrieve", "answer"])
    graph.add_conditional_edges("retrieve", can_inspect, ["inspect", "answer"])
    graph.add_edge("inspect", "reflect")
    graph.add_conditional_edges("reflect", search_again, ["retrieve", "answer"])
    graph.add_edge("answer", END)
    return graph.compile(checkpointer=checkpointer)

"""The `pathorag` command line: each command lives in its own module and is registered here."""

from __future__ import annotations

import typer

from pathorag.cli import ask, books, demo, evaluate, mcp, search, serve

app = typer.Typer(help="Pathology textbook RAG: index books, search pages.", no_args_is_help=True)
app.add_typer(books.index_app, name="index")
app.command("search")(search.search)
app.command("ask", context_settings={"allow_extra_args": True})(ask.ask)
app.command("eval")(evaluate.eval_command)
app.command("eval-convert")(evaluate.eval_convert)
app.command("demo")(demo.demo)
app.command("serve")(serve.serve)
app.command("mcp")(mcp.mcp)

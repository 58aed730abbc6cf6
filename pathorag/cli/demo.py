"""`pathorag demo`: index the bundled demo atlas (once) and answer three sample questions with citations."""

from __future__ import annotations

import time

from pathorag.cli.common import (
    CliError,
    answering_agent,
    evidence_lines,
    console,
    load_settings,
    out,
    page_progress,
    print_report,
    progress_bars,
    user_errors,
)
from pathorag.demo import DEMO_MANIFEST, DemoCorpusMissing, corpora_dir, sample_questions
from pathorag.manifest import ManifestError, load_manifest


def demo() -> None:
    """Index the bundled demo atlas (once) and answer three sample questions with cited pages."""
    from indexer.jobs import BookMeta, book_id_of, index_pdf
    from rag.page_index import PageIndex
    from server.settings import ServerSettings

    started = time.monotonic()
    with user_errors():
        try:
            folder = corpora_dir()
            books = load_manifest(folder / DEMO_MANIFEST)
        except (DemoCorpusMissing, ManifestError) as error:
            raise CliError(str(error)) from None
        settings = load_settings(ServerSettings)
        console.print(f"data dir: {settings.data_dir}", highlight=False)
        index = PageIndex(settings)
        try:
            book_ids = []
            for book in books:
                book_id = book_id_of(book.path)
                existing = index.book(book_id)
                if existing is not None and existing.complete:
                    console.print(f"already indexed: {book.title} (book {book_id})", highlight=False)
                else:
                    meta = BookMeta(book.title, book.edition_with_isbn, book.license, book.organ_systems)
                    with progress_bars() as progress:
                        report = index_pdf(index, book.path, meta, page_progress(progress, book.path.name))
                    print_report(report)
                    if report.status == "failed":
                        raise CliError(f"could not index the demo atlas: {report.error}")
                book_ids.append(book_id)
            with answering_agent(settings, index) as agent:
                mode = "evidence only: no VLM configured" if agent.evidence_only else f"VLM {settings.vlm_model}"
                out.print(f"\n[bold]Answering 3 sample questions[/bold] ({mode})", highlight=False)
                for number, sample in enumerate(sample_questions(folder), start=1):
                    asked = time.monotonic()
                    result = agent.run(sample["question"], sample["images"], sample["choices"], None, book_ids)
                    _print_sample(out, console, number, sample, result, time.monotonic() - asked)
        finally:
            index.close()
    out.print(f"\nDemo done in {time.monotonic() - started:.1f} s.", highlight=False)
    out.print(_next_steps(settings), highlight=False, soft_wrap=True)


def _print_sample(out, console, number: int, sample: dict, result, seconds: float) -> None:
    out.print(f"\n[bold]{number}. Question ({sample['kind']})[/bold]: {sample['question']}", highlight=False)
    for letter, choice in zip("ABCDEFGH", sample["choices"]):
        out.print(f"   {letter}. {choice}", highlight=False)
    for image in sample["images"]:
        out.print(f"   image: {image}", highlight=False)
    label = "Evidence (no language model; the best-supported pages)" if result.evidence_only else "Answer"
    answer = result.answer if len(result.answer) <= 600 else result.answer[:600].rstrip() + " ..."
    out.print(f"[bold]{label}[/bold] ({seconds:.1f} s):\n{answer}", highlight=False)
    if result.choice:
        support = result.option_support.get(result.choice)
        out.print(f"Choice: {result.choice}" + (f" (retrieval support {support:.2f})" if support is not None else "")
                  + (f"; the question file's answer is {sample['expected']}" if sample.get("expected") else ""),
                  highlight=False)
    if result.citations:
        out.print("Cited pages:")
    for citation in result.citations:
        out.print(f"  [{citation.ref}] {citation.title}, page {citation.page_label or citation.page} "
                  f"(pdf page {citation.page})", highlight=False)
        for line in evidence_lines(citation, max_chars=160):
            out.print(f"      {line}", highlight=False)
    for warning in result.warnings:
        console.print(f"[yellow]warning:[/yellow] {warning}", highlight=False)


def _next_steps(settings) -> str:
    return f"""
Next steps
  Ask your own questions:   pathorag ask "What is a granuloma?"
  Index your textbooks:     pathorag index add book.pdf   (or: pathorag index add --manifest books.json)
  Start the HTTP server:    PATHORAG_ALLOW_ANONYMOUS=true pathorag serve   (local use only, no key)
                            or set PATHORAG_API_KEYS=key1,key2 (and PATHORAG_ADMIN_API_KEYS) and run `pathorag serve`;
                            it listens on http://{settings.server_host}:{settings.server_port} (OpenAI-compatible chat at /v1/chat/completions)
  Connect a VLM for written answers and image reading: serve a vision-language model with vLLM, e.g.
                            vllm serve Qwen/Qwen2.5-VL-7B-Instruct --port 8001
                            then set PATHORAG_VLM_BASE_URL=http://localhost:8001/v1 and PATHORAG_VLM_MODEL=Qwen/Qwen2.5-VL-7B-Instruct
                            (in the environment or .env) and run `pathorag demo` again."""

"""The `pathorag` command line: the real console script in a subprocess, and Typer's CliRunner in-process.

Both run the real stack (PyMuPDF, qdrant-edge in a temporary data directory, MiniLM, tiny ColQwen2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageDraw
from typer.testing import CliRunner

from indexer.jobs import book_id_of
from pathorag.cli import app
from tests import pdf_factory
from tests.conftest import PATHOLOGY_PAGES, write_pathology_book

pytestmark = pytest.mark.slow

CONSOLE_SCRIPT = Path(sys.executable).parent / "pathorag"


def pathorag_env(data_dir: Path, page_encoder: str = "none") -> dict[str, str]:
    return {
        "PATHORAG_DATA_DIR": str(data_dir),
        "PATHORAG_PAGE_ENCODER": page_encoder,
        "PATHORAG_OCR": "false",
        "PATHORAG_RENDER_DPI": "72",
        "COLUMNS": "250",  # rich wraps at the terminal width; keep each message on one line
    }


def one_line(text: str) -> str:
    return " ".join(text.split())


# --- the installed console script, in subprocesses ---------------------------------------------------


@pytest.mark.skipif(not CONSOLE_SCRIPT.exists(), reason="the pathorag console script is not installed")
def test_add_then_search_with_the_console_script(tmp_path: Path) -> None:
    pdf = write_pathology_book(tmp_path / "essentials.pdf")
    env = os.environ | pathorag_env(tmp_path / "data")

    def pathorag(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(CONSOLE_SCRIPT), *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300
        )

    added = pathorag("index", "add", str(pdf))
    assert added.returncode == 0, added.stderr
    book_id = book_id_of(pdf)
    assert f"indexed: essentials.pdf (book {book_id}, {len(PATHOLOGY_PAGES)} pages in" in one_line(added.stderr)

    found = pathorag("search", "Reed-Sternberg cells with owl-eye nucleoli", "--json", "--top-k", "3")
    assert found.returncode == 0, found.stderr
    hits = json.loads(found.stdout)
    assert len(hits) == 3
    assert (hits[0]["book_id"], hits[0]["page"], hits[0]["title"]) == (book_id, 2, "Essentials of Pathology")
    assert "**Reed-Sternberg**" in hits[0]["snippet"]
    assert set(hits[0]["channel_scores"]) == {"bm25", "text"}
    assert "text" not in hits[0]


# --- CliRunner, in-process ----------------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Runs `pathorag ...` in-process against a data directory of its own; returns (exit code, stdout, stderr)."""
    monkeypatch.chdir(tmp_path)  # no stray .env
    for name, value in pathorag_env(tmp_path / "data").items():
        monkeypatch.setenv(name, value)
    runner = CliRunner()

    def run(*args: str | Path) -> tuple[int, str, str]:
        result = runner.invoke(app, [str(arg) for arg in args])
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            raise result.exception
        return result.exit_code, result.stdout, one_line(result.stderr)

    return run


def listed(cli) -> list[dict]:
    code, stdout, stderr = cli("index", "list", "--json")
    assert code == 0, stderr
    return json.loads(stdout)


def test_index_add_and_list(tmp_path: Path, cli) -> None:
    general = write_pathology_book(tmp_path / "essentials.pdf")
    renal = pdf_factory.write_text_pdf(tmp_path / "renal.pdf", ["Crescents fill Bowman space in crescentic glomerulonephritis."] * 2)

    code, _, stderr = cli("index", "add", general)
    assert code == 0, stderr
    assert f"indexed: essentials.pdf (book {book_id_of(general)}, {len(PATHOLOGY_PAGES)} pages in" in stderr
    code, _, stderr = cli("index", "add", renal, "--title", "Renal Pathology", "--edition", "2nd", "--organ", "kidney")
    assert code == 0, stderr
    code, _, stderr = cli("index", "add", general)
    assert code == 0 and f"already indexed: essentials.pdf (book {book_id_of(general)})" in stderr

    books = {book["source_name"]: book for book in listed(cli)}
    assert set(books) == {"essentials.pdf", "renal.pdf"}
    assert books["essentials.pdf"] | {"added_at": ""} == {
        "book_id": book_id_of(general),
        "title": "Essentials of Pathology",
        "edition": "",
        "license": "",
        "source_name": "essentials.pdf",
        "organ_systems": [],
        "page_count": len(PATHOLOGY_PAGES),
        "status": "complete",
        "failed_pages": [],
        "added_at": "",
        "pages_indexed": len(PATHOLOGY_PAGES),
    }
    renal_book = books["renal.pdf"]
    assert (renal_book["title"], renal_book["edition"], renal_book["organ_systems"]) == ("Renal Pathology", "2nd", ["kidney"])
    assert (renal_book["page_count"], renal_book["pages_indexed"]) == (2, 2)

    code, stdout, _ = cli("index", "list")
    assert code == 0 and "Renal Pathology" in stdout and f"{len(PATHOLOGY_PAGES)}/{len(PATHOLOGY_PAGES)}" in stdout

    code, stdout, stderr = cli("search", "crescents in Bowman space", "--organ", "kidney", "--json")
    assert code == 0, stderr
    assert {hit["book_id"] for hit in json.loads(stdout)} == {book_id_of(renal)}
    code, stdout, _ = cli("search", "Reed-Sternberg cells", "--book", "essentials.pdf", "--top-k", "1")
    assert code == 0 and "1. Essentials of Pathology, page 102 (pdf page 2)" in stdout
    assert "Hematopathology > Hodgkin lymphoma" in stdout


def test_index_add_of_a_bad_file_fails_with_its_name_and_reason(tmp_path: Path, cli) -> None:
    locked = pdf_factory.write_encrypted_pdf(tmp_path / "locked.pdf")

    code, _, stderr = cli("index", "add", locked)

    assert code != 0
    assert "failed locked.pdf: encrypted or password-protected PDF" in stderr
    assert listed(cli) == []


def test_index_add_of_a_good_and_a_bad_file_indexes_the_good_one_and_fails(tmp_path: Path, cli) -> None:
    good = write_pathology_book(tmp_path / "good.pdf")
    bad = pdf_factory.write_not_a_pdf(tmp_path / "scan.pdf", "png")
    missing = tmp_path / "missing.pdf"

    code, _, stderr = cli("index", "add", bad, good, missing)

    assert code != 0
    assert "failed scan.pdf: not a PDF file (it looks like a PNG image)" in stderr
    assert "failed missing.pdf: no such file" in stderr
    assert f"indexed: good.pdf (book {book_id_of(good)}" in stderr
    assert [(b["source_name"], b["status"], b["pages_indexed"]) for b in listed(cli)] == [
        ("good.pdf", "complete", len(PATHOLOGY_PAGES))
    ]
    code, stdout, _ = cli("search", "keratin pearls", "--json")
    assert code == 0 and json.loads(stdout)[0]["page"] == 6


def test_title_with_two_pdfs_is_refused(tmp_path: Path, cli) -> None:
    first = write_pathology_book(tmp_path / "a.pdf")
    second = pdf_factory.write_text_pdf(tmp_path / "b.pdf", ["Fatty change of the liver with large fat droplets."])

    code, _, stderr = cli("index", "add", first, second, "--title", "One Title")

    assert code == 2
    assert "--title applies to one PDF" in stderr
    assert listed(cli) == []


def test_search_errors_are_clear(tmp_path: Path, cli) -> None:
    notes = tmp_path / "notes.png"
    notes.write_text("lecture notes, not a picture")

    code, _, stderr = cli("search", "granuloma", "--image", notes)
    assert code == 2 and f"error: {notes}: not a readable image" in stderr

    code, _, stderr = cli("search", "--image", tmp_path / "nowhere.png")
    assert code == 2 and "nowhere.png: no such file" in stderr

    code, _, stderr = cli("search", "")
    assert code == 2 and "a search needs a text query, an image, or both" in stderr

    picture = tmp_path / "he.png"
    Image.new("RGB", (64, 64), (230, 160, 200)).save(picture)
    code, _, stderr = cli("search", "--image", picture)
    assert code == 2 and "image search needs a page encoder" in stderr

    code, _, stderr = cli("search", "granuloma", "--book", "no-such-book")
    assert code == 2 and "no book matches 'no-such-book'" in stderr


def test_index_remove_by_file_name(tmp_path: Path, cli) -> None:
    kept = write_pathology_book(tmp_path / "kept.pdf")
    gone = pdf_factory.write_text_pdf(tmp_path / "gone.pdf", ["Hyaline arteriolosclerosis in benign nephrosclerosis."])
    code, _, stderr = cli("index", "add", kept, gone)
    assert code == 0, stderr

    code, _, stderr = cli("index", "remove", "gone.pdf")

    assert code == 0 and f"removed book {book_id_of(gone)}" in stderr
    assert [b["source_name"] for b in listed(cli)] == ["kept.pdf"]
    assert not (tmp_path / "data" / "books" / f"{book_id_of(gone)}.pdf").exists()
    code, _, stderr = cli("index", "remove", "gone.pdf")
    assert code == 2 and "no book matches 'gone.pdf'" in stderr
    code, stdout, _ = cli("search", "hyaline arteriolosclerosis", "--json")
    assert code == 0 and {hit["book_id"] for hit in json.loads(stdout)} <= {book_id_of(kept)}


def test_index_reindex_after_changing_the_page_encoder(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch, tiny_colqwen2_path: Path
) -> None:
    pdf = write_pathology_book(tmp_path / "essentials.pdf")
    book_id = book_id_of(pdf)
    code, _, stderr = cli("index", "add", pdf)
    assert code == 0, stderr
    code, _, stderr = cli("index", "reindex", "essentials.pdf")  # same encoders, one book
    assert code == 0 and f"(book {book_id}, {len(PATHOLOGY_PAGES)} pages" in stderr

    monkeypatch.setenv("PATHORAG_PAGE_ENCODER", str(tiny_colqwen2_path))
    code, _, stderr = cli("search", "granuloma")
    assert code == 2 and "built with other encoders" in stderr and "pathorag index reindex" in stderr

    code, _, stderr = cli("index", "reindex")

    assert code == 0, stderr
    assert f"(book {book_id}, {len(PATHOLOGY_PAGES)} pages" in stderr
    [book] = listed(cli)
    assert (book["book_id"], book["source_name"], book["status"], book["pages_indexed"]) == (
        book_id, "essentials.pdf", "complete", len(PATHOLOGY_PAGES)
    )
    picture = tmp_path / "he.png"
    image = Image.new("RGB", (160, 120), (235, 170, 200))
    ImageDraw.Draw(image).ellipse((40, 30, 80, 60), fill=(90, 40, 130))
    image.save(picture)
    code, stdout, stderr = cli("search", "Reed-Sternberg cells", "--image", picture, "--json")
    assert code == 0, stderr
    hits = json.loads(stdout)
    assert hits and {"bm25", "text", "page", "image"} <= set().union(*(hit["channel_scores"] for hit in hits))

"""The demo atlas in corpora/, book manifests, `index add --manifest` and `pathorag demo`."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pymupdf
import pytest
from typer.testing import CliRunner

from pathorag.cli import app
from pathorag.demo import corpora_dir
from pathorag.manifest import ManifestError, load_manifest

CORPORA = Path(__file__).resolve().parent.parent / "corpora"
ATLAS = CORPORA / "demo_atlas.pdf"
TITLE = "PathoRAG Demo Atlas of General Pathology"


def _norm(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


# --- the atlas ------------------------------------------------------------------------------------


def test_atlas_pages_labels_outline_and_captions():
    assert corpora_dir() == CORPORA
    assert ATLAS.stat().st_size < 3_000_000
    with pymupdf.open(ATLAS) as doc:
        assert doc.page_count == 15
        assert [page.get_label() for page in doc] == ["i", "ii", *map(str, range(1, 14))]
        assert doc.metadata["title"] == TITLE
        toc = doc.get_toc()
        chapters = [entry for entry in toc if entry[0] == 1 and entry[1][0].isdigit()]
        assert len(chapters) == 13
        assert [1, "3. Patterns of necrosis", 5] in toc
        assert [1, "10. Immunohistochemistry", 12] in toc
        assert TITLE in doc[0].get_text()
        captions = {n: doc[n - 1].get_text() for n in (3, 12, 13)}
        for number, (page, text) in enumerate(captions.items(), start=1):
            assert f"Fig. {number}." in text, page
            assert doc[page - 1].get_images(), page
        text = " ".join(_norm(page.get_text()) for page in doc).lower()
        for topic in ("coagulative", "liquefactive", "caseous", "fat necrosis", "fibrinoid", "virchow",
                      "granuloma", "neutrophils", "sarcoma", "tnm", "immunohistochemistry", "metaplasia"):
            assert topic in text, topic


def test_manifest_of_the_atlas_matches_it():
    (book,) = load_manifest(CORPORA / "demo_atlas.manifest.json")
    assert book.path == ATLAS and book.title == TITLE and book.sha256
    assert (CORPORA / "demo_query_ihc.png").is_file()


def test_demo_questions_evidence_is_on_the_support_page():
    questions = [json.loads(line) for line in (CORPORA / "demo_questions.jsonl").read_text().splitlines() if line]
    assert len(questions) >= 8
    with pymupdf.open(ATLAS) as doc:
        for q in questions:
            assert q["type"] == "text_mcq" and q["book"] == "demo_atlas.pdf"
            assert q["answer"] == q["options"]["ABCD".index(q["answer_letter"])]
            assert _norm(q["evidence"]) in _norm(doc[q["support_pdf_page"] - 1].get_text()), q["id"]


# --- manifests ------------------------------------------------------------------------------------


def _manifest(tmp_path: Path, entries, name: str = "books.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(entries))
    return path


def test_manifest_list_or_object_resolves_relative_files(tmp_path):
    shutil.copy(ATLAS, tmp_path / "atlas.pdf")
    digest = hashlib.sha256(ATLAS.read_bytes()).hexdigest()
    entry = {"file": "atlas.pdf", "title": "Atlas", "edition": "2nd", "isbn": "978-0-00-000000-0",
             "license": "CC BY", "organ_systems": ["skin"], "sha256": digest.upper()}
    (book,) = load_manifest(_manifest(tmp_path, [entry]))
    assert book.path == (tmp_path / "atlas.pdf").resolve()
    assert book.edition_with_isbn == "2nd, ISBN 978-0-00-000000-0"
    (book,) = load_manifest(_manifest(tmp_path, {"books": [{"file": str(tmp_path / "atlas.pdf")}]}, "b.json"))
    assert book.sha256 is None and book.title == ""


def test_manifest_checksum_mismatch_names_the_file(tmp_path):
    shutil.copy(ATLAS, tmp_path / "atlas.pdf")
    with pytest.raises(ManifestError, match=r"atlas\.pdf: sha256 mismatch"):
        load_manifest(_manifest(tmp_path, [{"file": "atlas.pdf", "sha256": "0" * 64}]))


def test_manifest_missing_file_and_bad_fields(tmp_path):
    with pytest.raises(ManifestError, match=r"gone\.pdf: no such file"):
        load_manifest(_manifest(tmp_path, [{"file": "gone.pdf"}]))
    with pytest.raises(ManifestError, match="sha256 must be 64"):
        load_manifest(_manifest(tmp_path, [{"file": "x.pdf", "sha256": "abc"}]))
    with pytest.raises(ManifestError, match="colour"):
        load_manifest(_manifest(tmp_path, [{"file": "x.pdf", "colour": "red"}]))
    with pytest.raises(ManifestError, match="no such file"):
        load_manifest(tmp_path / "absent.json")


# --- CLI ------------------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PATHORAG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("PATHORAG_PAGE_ENCODER", "none")
    monkeypatch.setenv("PATHORAG_OCR", "false")
    for name in ("PATHORAG_VLM_BASE_URL", "PATHORAG_VLM_MODEL", "PATHORAG_ROUTER_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    return tmp_path


def test_index_add_manifest(cli_env):
    shutil.copy(ATLAS, cli_env / "atlas.pdf")
    manifest = _manifest(cli_env, [{"file": "atlas.pdf", "title": "My Atlas", "edition": "1st", "isbn": "123",
                                    "license": "CC BY 4.0", "organ_systems": ["skin", "lung"]}])
    runner = CliRunner()
    result = runner.invoke(app, ["index", "add", "--manifest", str(manifest)])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(app, ["index", "list", "--json"])
    (book,) = json.loads(listed.stdout)
    assert book["title"] == "My Atlas" and book["edition"] == "1st, ISBN 123"
    assert book["license"] == "CC BY 4.0" and book["organ_systems"] == ["skin", "lung"]
    assert book["pages_indexed"] == 15

    bad = _manifest(cli_env, [{"file": "atlas.pdf", "sha256": "1" * 64}], "bad.json")
    result = runner.invoke(app, ["index", "add", "--manifest", str(bad)])
    assert result.exit_code == 2 and "sha256 mismatch" in result.output
    result = runner.invoke(app, ["index", "add"])
    assert result.exit_code == 2 and "--manifest" in result.output


def test_demo_end_to_end_and_idempotent(cli_env):
    runner = CliRunner()
    first = runner.invoke(app, ["demo"])
    assert first.exit_code == 0, first.output
    text = first.output
    assert "indexed: demo_atlas.pdf" in text
    assert text.count("Question (") == 3
    assert f"{TITLE}, page 3 (pdf page 5)" in text  # the caseous necrosis page, by its printed label
    assert "Choice: A" in text
    assert "page 10 (pdf page 12)" in text or "page 11 (pdf page 13)" in text  # IHC pages for the image question
    assert "“Caseous necrosis" in text  # the passage each citation relies on, quoted under it
    assert "figure: Fig. 2. Immunohistochemistry" in text  # and the cited page's figure
    assert "page ii (pdf page 2)" not in text  # the contents page names every topic but states none
    assert "page i (pdf page 1)" not in text  # nor does the title page
    assert "pathorag serve" in text and "PATHORAG_ALLOW_ANONYMOUS" in text
    assert "PATHORAG_VLM_BASE_URL" in text and "PATHORAG_VLM_MODEL" in text

    second = runner.invoke(app, ["demo"])
    assert second.exit_code == 0, second.output
    assert "already indexed" in second.output and "indexed: demo_atlas.pdf" not in second.output
    listed = json.loads(runner.invoke(app, ["index", "list", "--json"]).stdout)
    assert len(listed) == 1 and listed[0]["title"] == TITLE

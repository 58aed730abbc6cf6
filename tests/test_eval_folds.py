"""`pathorag eval --folds/--sweep`: settings chosen on other folds, baselines beside, on a real index."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathorag.folds import FoldError, cross_validate, parse_sweep, pick

FIELDS = {"weight_text": None, "fusion": None, "chunk_words": None}


def test_sweep_specs_give_every_combination_and_refuse_index_time_settings() -> None:
    combos = parse_sweep(["weight_text=0.5,0.7", "PATHORAG_FUSION=rrf,weighted"], FIELDS, {"chunk_words"})
    assert combos == [
        {"weight_text": "0.5", "fusion": "rrf"},
        {"weight_text": "0.5", "fusion": "weighted"},
        {"weight_text": "0.7", "fusion": "rrf"},
        {"weight_text": "0.7", "fusion": "weighted"},
    ]
    assert parse_sweep([], FIELDS, set()) == [{}]
    with pytest.raises(FoldError, match="changes what the index stores"):
        parse_sweep(["chunk_words=40,80"], FIELDS, {"chunk_words"})
    with pytest.raises(FoldError, match="no setting named"):
        parse_sweep(["weight_txt=1"], FIELDS, set())
    with pytest.raises(FoldError, match="NAME=VALUE"):
        parse_sweep(["weight_text="], FIELDS, set())
    with pytest.raises(FoldError, match="twice"):
        parse_sweep(["weight_text=1", "weight_text=2"], FIELDS, set())


def test_a_choice_that_only_fits_its_own_fold_shows_as_no_gain_held_out() -> None:
    # Run "a" is right on fold x only, run "b" on fold y only; "b" is better overall (3 of 5 items).
    folds = ["x", "x", "y", "y", "y"]
    runs = {
        "a": [{"v": 1}, {"v": 1}, {"v": 0}, {"v": 0}, {"v": 0}],
        "b": [{"v": 0}, {"v": 0}, {"v": 1}, {"v": 1}, {"v": 1}],
    }
    held_out, tuned = cross_validate(runs, folds, lambda record: record["v"])
    assert tuned == ["b"] * 5
    # each fold gets the run that is best on the other fold, which is wrong on it
    assert held_out == ["b", "b", "a", "a", "a"]
    assert sum(r["v"] for r in pick(runs, tuned)) == 3
    assert sum(r["v"] for r in pick(runs, held_out)) == 0
    # ties go to the run listed first (the defaults)
    assert cross_validate({"defaults": [{"v": 1}], "other": [{"v": 1}]}, ["x"], lambda r: r["v"])[1] == ["defaults"]


def _env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    for name, value in {"PATHORAG_DATA_DIR": str(tmp_path / "data"), "PATHORAG_PAGE_ENCODER": "none",
                        "PATHORAG_OCR": "false", "PATHORAG_RENDER_DPI": "72", "COLUMNS": "250"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PATHORAG_VLM_BASE_URL", raising=False)


@pytest.mark.slow
def test_eval_by_chapter_and_book_with_a_sweep_and_baselines(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathorag.cli import app
    from tests.conftest import write_pathology_book
    from tests.pdf_factory import PageSpec, write_text_pdf

    _env(monkeypatch, tmp_path)
    write_pathology_book(tmp_path / "essentials.pdf")
    write_text_pdf(tmp_path / "bones.pdf", [
        PageSpec(heading="Osteomyelitis", text="Acute haematogenous osteomyelitis of children is most often caused by Staphylococcus aureus in the metaphysis."),
        PageSpec(heading="Rickets", text="Rickets is a failure of mineralisation of growing bone from a lack of vitamin D, with bowed legs."),
    ], toc=[(1, "Infection", 1), (1, "Metabolic bone disease", 2)])
    rows = [
        ("essentials.pdf", 2, "Which binucleate cells express CD15 and CD30?", ["Reed-Sternberg cells", "Langhans giant cells"], "A"),
        ("essentials.pdf", 5, "What fills Bowman space in rapidly progressive glomerulonephritis?", ["Keratin pearls", "Crescents"], "B"),
        ("essentials.pdf", 1, "Which giant cells arrange their nuclei in a horseshoe?", ["Reed-Sternberg cells", "Langhans giant cells"], "B"),
        ("essentials.pdf", 4, "What surrounds the regenerative nodules of a cirrhotic liver?", ["Dense fibrous septa", "Crescents"], "A"),
        ("bones.pdf", 1, "Which organism causes most acute osteomyelitis in children?", ["Staphylococcus aureus", "Vitamin D"], "A"),
        ("bones.pdf", 2, "A lack of which vitamin causes rickets?", ["Staphylococcus aureus", "Vitamin D"], "B"),
    ]
    questions = tmp_path / "q.jsonl"
    questions.write_text("".join(
        json.dumps({"id": f"q{i}", "question": q, "options": o, "answer_letter": a, "book": b, "support_pdf_page": p}) + "\n"
        for i, (b, p, q, o, a) in enumerate(rows)
    ))
    runner = CliRunner()

    result = runner.invoke(app, ["eval", str(questions), "--folds", "chapter", "--sweep", "weight_text=0,3", "--out", "r.json"])
    assert result.exit_code == 0, result.output
    assert "pathorag eval by chapter" in result.stdout and "held out" in result.stdout
    folds = json.loads(Path("r.json").read_text())["folds"]
    assert folds["by"] == "chapter" and folds["objective"] == "MRR"
    assert folds["n_folds"] == 6  # the top-level outline entry of each support page
    assert set(folds["held_out_choice"].values()) <= {"defaults", "weight_text=0", "weight_text=3"}
    assert "essentials.pdf / Hematopathology" in folds["held_out_choice"]
    by_run = {(row["book"], row["run"]): row for row in folds["rows"]}
    for book in ("essentials.pdf", "bones.pdf", "all"):
        for run in ("bm25 alone", "text alone", "defaults", "tuned", "held out"):
            assert (book, run) in by_run
    assert by_run[("all", "defaults")]["n"] == 6
    assert by_run[("bones.pdf", "bm25 alone")]["R@1"] == 1.0

    # answer mode, by book: the plain answer baselines are measured beside the agent
    result = runner.invoke(app, ["eval", str(questions), "--mode", "answer", "--folds", "book", "--out", "a.json"])
    assert result.exit_code == 0, result.output
    folds = json.loads(Path("a.json").read_text())["folds"]
    assert folds["n_folds"] == 2 and folds["objective"] == "accuracy" and "tuned_choice" not in folds
    by_run = {(row["book"], row["run"]): row for row in folds["rows"]}
    for baseline in ("BM25 question+option", "option words in top 5 pages"):
        assert by_run[("all", baseline)]["n"] == 6 and by_run[("all", baseline)]["insufficient_evidence"] == 0.0
    assert by_run[("essentials.pdf", "BM25 question+option")]["accuracy"] == 1.0  # each option names its page's topic
    assert by_run[("all", "defaults")]["n"] == 6

    # a sweep is refused without folds, and over a setting that changes the index
    result = runner.invoke(app, ["eval", str(questions), "--sweep", "weight_text=0,1"])
    assert result.exit_code == 2 and "--sweep needs --folds" in result.stderr
    result = runner.invoke(app, ["eval", str(questions), "--folds", "book", "--sweep", "chunk_words=40,80"])
    assert result.exit_code == 2 and "changes what the index stores" in result.stderr
    result = runner.invoke(app, ["eval", str(questions), "--folds", "page"])
    assert result.exit_code == 2 and "unknown folds" in result.stderr

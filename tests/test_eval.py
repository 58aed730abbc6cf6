"""`pathorag eval`: metric functions on hand-made rankings, the converters, and the command end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pathorag.converters import ConvertError, convert_file
from pathorag.evaluation import (
    auroc,
    found_at,
    load_items,
    load_page_map,
    ndcg_at_k,
    percentile,
    ranks_of,
    reciprocal_rank,
    retrieval_summary,
)

# --- metrics -------------------------------------------------------------------------------------------


def test_ranks_recall_and_mrr_on_a_hand_made_ranking() -> None:
    ranking = [7, 3, 9, 3, 12, 1]  # a repeated page keeps its first rank
    assert ranks_of(ranking, [3]) == [2]
    assert ranks_of(ranking, [12, 40]) == [5, None]
    assert not found_at([2], 1) and found_at([2], 5)
    assert reciprocal_rank([2]) == 0.5
    assert reciprocal_rank([None, 4]) == 0.25
    assert reciprocal_rank([None]) == 0.0


def test_multi_page_items_count_at_k_only_with_all_pages_unless_any() -> None:
    ranks = [1, 7]
    assert found_at(ranks, 1, all_pages=False) and not found_at(ranks, 1, all_pages=True)
    assert not found_at(ranks, 5, all_pages=True) and found_at(ranks, 10, all_pages=True)
    assert not found_at([1, None], 10, all_pages=True)

    summary = retrieval_summary([[1], [3], [None], [1, 7]])
    assert summary["n"] == 4 and summary["multi_page"] == 1
    assert summary["recall_any@1"] == 0.5 and summary["recall_all@1"] == 0.25
    assert summary["recall_any@5"] == 0.75 and summary["recall_all@5"] == 0.5
    assert summary["recall_all@10"] == 0.75
    assert summary["mrr"] == pytest.approx((1 + 1 / 3 + 0 + 1) / 4, abs=1e-4)


def test_ndcg_at_5_known_values() -> None:
    assert ndcg_at_k([1]) == 1.0
    assert ndcg_at_k([3]) == pytest.approx(1 / math.log2(4)) == 0.5
    assert ndcg_at_k([6]) == 0.0 and ndcg_at_k([None]) == 0.0
    # two relevant pages at ranks 1 and 3: (1 + 0.5) / (1 + 1/log2(3))
    assert ndcg_at_k([1, 3]) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert ndcg_at_k([2, 1]) == pytest.approx(1.0)


def test_auroc_known_values() -> None:
    assert auroc([3, 4], [1, 2]) == 1.0
    assert auroc([1, 2], [3, 4]) == 0.0
    # pairs: (0.9>0.1) (0.9>0.5) (0.4>0.1) (0.4<0.5) -> 3/4; a tie counts half
    assert auroc([0.9, 0.4], [0.1, 0.5]) == 0.75
    assert auroc([1.0], [1.0]) == 0.5
    assert auroc([1.0], []) is None


def test_percentile_interpolates() -> None:
    assert percentile([10, 20, 30, 40], 50) == 25
    assert percentile([5], 95) == 5
    assert percentile([], 50) is None


# --- items ---------------------------------------------------------------------------------------------


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def test_item_kinds_and_page_map_retargeting(tmp_path: Path) -> None:
    questions = write_jsonl(
        tmp_path / "q.jsonl",
        [
            {"id": "a", "type": "text_mcq", "question": "Q?", "options": ["x", "y"], "answer_letter": "A",
             "book": "atlas_dev.pdf", "support_pdf_page": 2, "support_orig_page": 31},
            {"id": "b", "type": "text_mcq", "question": "Q2?", "options": {"A": "x", "B": "y"}, "answer_letter": "B",
             "book": "atlas_dev.pdf", "support_pdf_pages": [1, 2], "support_orig_pages": [30, 99]},
            {"id": "c", "question": "Out of corpus?", "options": ["x", "y"], "answer_letter": "A"},
            {"id": "d", "kind": "external", "type": "figure_vqa", "image": "img/1.png", "question": "Yes?", "options": ["yes", "no"], "answer_letter": "A", "book": None},
        ],
    )
    items, notes = load_items(questions)
    assert [i.kind for i in items] == ["in_corpus", "in_corpus", "out_of_corpus", "external"]
    assert items[1].support == [1, 2] and items[1].options == ["x", "y"]
    assert items[3].image == tmp_path / "img/1.png"

    (tmp_path / "atlas_dev_full.page_map.json").write_text(json.dumps([{"pdf_page": 40 + n, "orig_page": 30 + n} for n in range(3)]))
    page_map = load_page_map(tmp_path / "atlas_dev_full.page_map.json")
    assert page_map[0] == "atlas_dev_full.pdf"
    items, notes = load_items(questions, page_map)
    assert [i.id for i in items] == ["a", "c", "d"]  # b: orig page 99 is not in the map
    assert (items[0].book, items[0].support) == ("atlas_dev_full.pdf", [41])
    assert "1 items re-targeted" in notes[0] and "1 without a mapped page skipped" in notes[0]


# --- converters ----------------------------------------------------------------------------------------


def test_convert_pathvqa_yes_no_and_open(tmp_path: Path) -> None:
    source = write_jsonl(
        tmp_path / "pathvqa.jsonl",
        [
            {"image": "images/train_0001.jpg", "question": "Is there necrosis?", "answer": "Yes"},
            {"image": {"path": "images/train_0002.jpg"}, "question": "What is present?", "answer": "granuloma"},
        ],
    )
    assert convert_file("pathvqa", source, tmp_path / "out.jsonl") == 2
    first, second = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert first | {} == {
        "id": "pathvqa-00001", "kind": "external", "type": "figure_vqa", "style": "yes_no",
        "image": "images/train_0001.jpg", "question": "Is there necrosis?", "options": ["yes", "no"],
        "answer": "yes", "answer_letter": "A", "book": None, "source": "PathVQA",
    }
    assert (second["style"], second["options"], second["answer_letter"], second["image"]) == ("open", None, None, "images/train_0002.jpg")

    items, _ = load_items(tmp_path / "out.jsonl")
    assert [i.kind for i in items] == ["external", "external"]


def test_convert_pathmmu_list_and_dict_options(tmp_path: Path) -> None:
    source = tmp_path / "pathmmu.json"
    source.write_text(json.dumps({
        "PubMed": [{"No": 7, "img": "images/a.jpg", "question": "Which stain?", "options": ["A) H&E", "B) PAS", "C) Congo red"], "answer": "C"}],
        "Atlas": [{"question": "Which organ?", "options": {"A": "Liver", "B": "Kidney"}, "answer": "B", "image_path": "b.png"}],
    }))
    assert convert_file("pathmmu", source, tmp_path / "out.jsonl") == 2
    first, second = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert (first["id"], first["options"], first["answer"], first["answer_letter"], first["style"], first["image"]) == (
        "pathmmu-PubMed-7", ["H&E", "PAS", "Congo red"], "Congo red", "C", "PubMed", "images/a.jpg")
    assert (second["options"], second["answer"], second["image"]) == (["Liver", "Kidney"], "Kidney", "b.png")

    source.write_text(json.dumps([{"question": "Q", "options": ["x", "y"], "answer": "E"}]))
    with pytest.raises(ConvertError, match="not an option letter"):
        convert_file("pathmmu", source, tmp_path / "bad.jsonl")


# --- the command, end to end ---------------------------------------------------------------------------


@pytest.mark.slow
def test_eval_command_retrieval_and_answer_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathorag.cli import app
    from tests.conftest import write_pathology_book

    monkeypatch.chdir(tmp_path)
    for name, value in {"PATHORAG_DATA_DIR": str(tmp_path / "data"), "PATHORAG_PAGE_ENCODER": "none",
                        "PATHORAG_OCR": "false", "PATHORAG_RENDER_DPI": "72", "COLUMNS": "250"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("PATHORAG_VLM_BASE_URL", raising=False)
    books = tmp_path / "books"
    books.mkdir()
    write_pathology_book(books / "essentials.pdf")
    (tmp_path / "q").mkdir()
    (tmp_path / "q" / "fig.png").write_bytes(b"not read: no visual channel")
    questions = write_jsonl(tmp_path / "q" / "questions.jsonl", [
        {"id": "t1", "type": "text_mcq", "style": "plain", "question": "Which cells have owl-eye nucleoli and express CD15 and CD30?",
         "options": ["Reed-Sternberg cells", "Langhans giant cells"], "answer_letter": "A", "book": "essentials.pdf", "support_pdf_page": 2},
        {"id": "t2", "type": "text_mcq", "style": "plain", "question": "What fills Bowman space in rapidly progressive glomerulonephritis?",
         "options": ["Keratin pearls", "Crescents"], "answer_letter": "B", "book": "essentials.pdf", "support_pdf_pages": [5]},
        {"id": "m1", "type": "text_mcq", "style": "two_page", "question": "Caseous necrosis and regenerative nodules of cirrhosis",
         "options": ["x", "y"], "answer_letter": "A", "book": "essentials.pdf", "support_pdf_pages": [3, 4]},
        {"id": "f1", "type": "figure_vqa", "image": "fig.png", "question": "Which lesion is shown?",
         "options": ["Granuloma", "Crescent"], "answer_letter": "A", "book": "essentials.pdf", "support_pdf_page": 1},
    ])
    control = write_jsonl(tmp_path / "q" / "control.jsonl", [
        {"id": "o1", "question": "Which enamel structure spreads dental caries laterally?", "options": ["Enamel spindles", "Dentinoenamel junction"], "answer": "Dentinoenamel junction", "answer_letter": "B"},
        {"id": "o2", "question": "Which vitamin deficiency causes scurvy of the gums?", "options": ["C", "D"], "answer": "C", "answer_letter": "A"},
    ])
    runner = CliRunner()
    result = runner.invoke(app, ["eval", str(questions), str(control), "--book-dir", str(books), "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "R@1 all" in result.stdout and "AUROC" in result.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["mode"] == "retrieval" and report["n_items"] == 6
    assert report["books"]["essentials.pdf"]["status"] == "indexed"
    overall = report["groups"]["all in-corpus"]
    assert (overall["n"], overall["n_evaluable"]) == (4, 3)
    assert overall["recall_any@1"] == pytest.approx(1.0)  # t1, t2 and one page of m1 first
    assert set(overall) >= {"recall_all@1", "recall_all@5", "recall_all@10", "recall_any@10", "mrr", "ndcg@5"}
    assert report["groups"]["two_page"]["recall_all@1"] == 0.0
    assert report["groups"]["out-of-corpus"]["n"] == 2
    assert report["not_evaluable"] == {"image query without a visual channel (PATHORAG_PAGE_ENCODER=none)": 1}
    assert 0.0 <= report["calibration"]["auroc_top_score"] <= 1.0
    assert report["calibration"]["auroc_top_bm25_score"] == 1.0
    assert report["calibration"]["score"] == "top fused search score"
    assert report["latency"]["search"]["n"] == 5 and report["latency"]["search"]["p95_ms"] > 0
    items = {item["id"]: item for item in report["items"]}
    assert items["t1"]["ranks"] == [1] and items["t2"]["ranks"] == [1]

    # a second run finds the book indexed; answer mode scores the evidence-only agent
    result = runner.invoke(app, ["eval", str(questions), str(control), "--book-dir", str(books), "--mode", "answer", "--out", str(tmp_path / "a.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "a.json").read_text())
    assert report["books"]["essentials.pdf"]["status"] == "already indexed"
    assert report["groups"]["plain"]["accuracy"] == 1.0
    assert 0.0 <= report["calibration"]["out_of_corpus_insufficient_evidence"] <= 1.0
    assert report["latency"]["agent"]["n"] >= 5
    assert all(item["evidence_only"] for item in report["items"] if item["evaluable"])


def test_eval_command_reports_a_missing_book(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from pathorag.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PATHORAG_DATA_DIR", str(tmp_path / "data"))
    questions = write_jsonl(tmp_path / "q.jsonl", [{"id": "x", "question": "Q?", "book": "absent.pdf", "support_pdf_page": 1}])
    result = CliRunner().invoke(app, ["eval", str(questions)])
    assert result.exit_code == 2
    assert "absent.pdf" in result.stderr and "not found" in result.stderr

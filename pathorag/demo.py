"""The demo corpus: the bundled atlas and its three sample questions (the command is `pathorag.cli.demo`).

The demo corpus lives in the repository's `corpora/` folder (not in the installed package): it is found
next to the `pathorag` package of a checkout or editable install.
"""

from __future__ import annotations

import json
from pathlib import Path

DEMO_MANIFEST = "demo_atlas.manifest.json"
DEMO_QUESTIONS = "demo_questions.jsonl"
DEMO_IMAGE = "demo_query_ihc.png"


class DemoCorpusMissing(Exception):
    pass


def corpora_dir() -> Path:
    """The repository's `corpora/` folder, resolved from this module's file."""
    folder = Path(__file__).resolve().parent.parent / "corpora"
    if not (folder / DEMO_MANIFEST).is_file():
        raise DemoCorpusMissing(
            f"the demo corpus is not at {folder} (it ships with the repository, not with the installed "
            "package): run the demo from a clone, after ./install.sh (an editable install)"
        )
    return folder


def sample_questions(folder: Path) -> list[dict]:
    """One MCQ (from the question file), one open question, one question with a histology image."""
    mcq = next(
        json.loads(line)
        for line in (folder / DEMO_QUESTIONS).read_text().splitlines()
        if line.strip() and json.loads(line)["id"] == "demo-t03"
    )
    return [
        {"kind": "multiple choice", "question": mcq["question"], "choices": mcq["options"], "images": [],
         "expected": f"{mcq['answer_letter']}. {mcq['answer']}"},
        {"kind": "open", "question": "What is the difference between the grade and the stage of a tumour?",
         "choices": [], "images": []},
        {"kind": "with a histology image", "question": "What does the brown staining in this immunostained section show?",
         "choices": [], "images": [folder / DEMO_IMAGE]},
    ]

"""The demo corpus: the bundled atlas and its three sample questions (the command is `pathorag.cli.demo`).

The demo corpus lives in the repository's `corpora/` folder (not in the installed package): it is found
next to the `pathorag` package of a checkout or editable install, or where the Docker image puts its
copy, `share/pathorag/corpora` under the environment's prefix.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

DEMO_MANIFEST = "demo_atlas.manifest.json"
DEMO_QUESTIONS = "demo_questions.jsonl"
DEMO_IMAGE = "demo_query_ihc.png"


class DemoCorpusMissing(Exception):
    pass


def corpora_dir() -> Path:
    """The repository's `corpora/` folder (resolved from this module's file), else the image's copy."""
    places = [Path(__file__).resolve().parent.parent / "corpora", Path(sys.prefix) / "share" / "pathorag" / "corpora"]
    for folder in places:
        if (folder / DEMO_MANIFEST).is_file():
            return folder
    raise DemoCorpusMissing(
        f"the demo corpus is not at {places[0]} or {places[1]} (it ships with the repository and the Docker "
        "image, not with the package): run the demo from a clone, after ./install.sh (an editable install)"
    )


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

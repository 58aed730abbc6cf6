"""Public pathology VQA sets -> the question schema of `pathorag eval` (README, "Evaluation").

- PathVQA: rows of {image, question, answer}; yes/no answers become two-option MCQs (yes / no),
  other answers stay open questions (no options, not scored for accuracy).
- PathMMU: multiple-choice items {question, options (list, or dict by letter), answer (a letter),
  image path}; a file may hold a list, or a dict of lists by subset (the subset becomes the style).
Both become `"kind": "external"`, `"type": "figure_vqa"` items without a book or support pages: the
textbooks are not their source, so they measure answers, not page retrieval.
Input: a JSON list / dict or JSON lines. Image paths are kept as given (relative to the output file).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

FORMATS = ("pathvqa", "pathmmu")
LETTERS = "ABCDEFGHIJ"
_LETTER_PREFIX = re.compile(r"^\s*\(?([A-J])[\).:]\s+")


class ConvertError(ValueError):
    """Input that does not have the expected fields (the message names the row)."""


def read_rows(path: Path) -> list[tuple[str, dict]]:
    """(subset, row) pairs from a JSON list, a JSON dict of lists, or JSON lines."""
    text = Path(path).read_text()
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        data = [json.loads(line) for line in text.splitlines() if line.strip()]
    if isinstance(data, dict):
        if all(isinstance(value, list) for value in data.values()):
            return [(str(subset), row) for subset, rows in data.items() for row in rows]
        data = [data]
    return [("", row) for row in data]


def _image(row: dict) -> str | None:
    for key in ("image", "img", "image_path", "image_file", "img_path"):
        value = row.get(key)
        if isinstance(value, dict):
            value = value.get("path")
        if value:
            return str(value)
    return None


def convert_pathvqa(rows: list[tuple[str, dict]], prefix: str = "pathvqa") -> list[dict]:
    items = []
    for number, (_, row) in enumerate(rows, start=1):
        if not row.get("question") or row.get("answer") in (None, ""):
            raise ConvertError(f"PathVQA row {number}: needs `question` and `answer`")
        answer = str(row["answer"]).strip()
        yes_no = answer.lower() in ("yes", "no")
        items.append(
            {
                "id": f"{prefix}-{number:05d}",
                "kind": "external",
                "type": "figure_vqa",
                "style": "yes_no" if yes_no else "open",
                "image": _image(row),
                "question": str(row["question"]).strip(),
                "options": ["yes", "no"] if yes_no else None,
                "answer": answer.lower() if yes_no else answer,
                "answer_letter": ("A" if answer.lower() == "yes" else "B") if yes_no else None,
                "book": None,
                "source": "PathVQA",
            }
        )
    return items


def _pathmmu_options(value, number: int) -> list[str]:
    if isinstance(value, dict):
        return [str(value[key]).strip() for key in sorted(value)]
    if isinstance(value, list):
        return [_LETTER_PREFIX.sub("", str(option)).strip() for option in value]
    raise ConvertError(f"PathMMU item {number}: `options` must be a list or a dict by letter")


def convert_pathmmu(rows: list[tuple[str, dict]], prefix: str = "pathmmu") -> list[dict]:
    items = []
    for number, (subset, row) in enumerate(rows, start=1):
        if not row.get("question") or not row.get("options") or not row.get("answer"):
            raise ConvertError(f"PathMMU item {number}: needs `question`, `options` and `answer`")
        options = _pathmmu_options(row["options"], number)
        letter = str(row["answer"]).strip().strip("()").upper()[:1]
        if letter not in LETTERS[: len(options)]:
            raise ConvertError(f"PathMMU item {number}: answer {row['answer']!r} is not an option letter")
        items.append(
            {
                "id": f"{prefix}-{subset + '-' if subset else ''}{row.get('No', row.get('id', number))}",
                "kind": "external",
                "type": "figure_vqa",
                "style": subset or "pathmmu",
                "image": _image(row),
                "question": str(row["question"]).strip(),
                "options": options,
                "answer": options[LETTERS.index(letter)],
                "answer_letter": letter,
                "book": None,
                "source": "PathMMU" + (f" ({subset})" if subset else ""),
            }
        )
    return items


def convert_file(fmt: str, source: Path, target: Path) -> int:
    """Convert `source` into JSON lines at `target`; returns the number of items."""
    if fmt not in FORMATS:
        raise ConvertError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
    rows = read_rows(source)
    items = convert_pathvqa(rows) if fmt == "pathvqa" else convert_pathmmu(rows)
    Path(target).write_text("".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items))
    return len(items)

"""Evidence-only answers (no model configured) on a small real index, input checks, helpers and `pathorag ask`."""

from __future__ import annotations

import io
from concurrent.futures import ThreadPoolExecutor
import json
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from agent import Agent, AgentConfigError, AgentInputError, ImageInputError
from agent.evidence import score_options
from agent.images import fit_pixels
from rag.page_images import crop_fraction
from agent.vlm import extract_json
from pathorag.cli import app
from rag.page_index import PageIndex
from tests.agent_support import HODGKIN_PAGE_LABEL, MCQ_CHOICES, MCQ_QUESTION, agent_library, agent_settings  # noqa: F401
from tests.conftest import write_pathology_book

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def agent(agent_library):  # noqa: F811
    agent = Agent(agent_library.settings, agent_library.index)
    yield agent
    agent.close()


def png_bytes(size=(64, 48)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (200, 120, 180)).save(buffer, format="PNG")
    return buffer.getvalue()


# --- evidence-only answers ------------------------------------------------------------------------


def test_mcq_evidence_only_picks_the_best_supported_option(agent) -> None:
    result = agent.run(MCQ_QUESTION, choices=MCQ_CHOICES)
    assert result.evidence_only and result.answer.startswith("Evidence only: no language model generated this answer.")
    assert result.choice == "A" and result.confidence is None
    assert set(result.option_support) == {"A", "B", "C"}
    assert sum(result.option_support.values()) == pytest.approx(1.0)
    assert max(result.option_support, key=result.option_support.get) == "A"
    assert result.citations[0].page_label == HODGKIN_PAGE_LABEL and "Reed-Sternberg" in result.citations[0].snippet
    route = result.trace[0]
    assert route.by == "rules" and len(route.queries) == 1 + len(MCQ_CHOICES)
    assert result.usage.prompt_tokens == 0 and result.warnings == []


def test_open_question_evidence_only_ranks_pages(agent) -> None:
    result = agent.run("What does cirrhosis of the liver look like?")
    assert result.evidence_only and result.choice is None and not result.option_support
    assert result.citations[0].page_label == "104"
    assert [c.score for c in result.citations] == sorted((c.score for c in result.citations), reverse=True)
    assert all(c.image_key and c.book_id for c in result.citations)


def test_filters_reach_the_search(agent, agent_library) -> None:  # noqa: F811
    result = agent.run("Reed-Sternberg cells", books=[agent_library.book_id], organ_systems=["kidney"])
    assert result.insufficient_evidence and result.citations == []  # no page is tagged kidney


def test_empty_index_says_there_is_no_evidence(tmp_path: Path, text_only_encoders) -> None:
    settings = agent_settings(tmp_path / "data")
    index = PageIndex(settings, encoders=text_only_encoders)
    try:
        result = Agent(settings, index).run(MCQ_QUESTION, choices=MCQ_CHOICES)
    finally:
        index.close()
    assert result.evidence_only and result.insufficient_evidence
    assert result.citations == [] and result.choice is None
    assert "No indexed textbook page matched" in result.answer


def test_thread_history_is_kept_in_sqlite(agent, agent_library) -> None:  # noqa: F811
    agent.run("What is caseous necrosis?", thread_id="evidence-thread")
    second = agent.run("And granulomas?", thread_id="evidence-thread")
    assert second.thread_id == "evidence-thread"
    assert (agent_library.settings.data_dir / "threads.sqlite").is_file()


# --- bad input: a clear error, raised before any work ---------------------------------------------


@pytest.mark.parametrize(
    ("question", "choices", "message"),
    [
        ("", [], "the question is empty"),
        ("   ", [], "the question is empty"),
        ("x" * 4_001, [], "at most 4000 are accepted"),
        ("Which?", ["only one"], "needs 2 to 26 choices"),
        ("Which?", ["a", "  "], "a choice is empty"),
    ],
)
def test_bad_text_input_is_refused(agent, question, choices, message) -> None:
    with pytest.raises(AgentInputError, match=message):
        agent.run(question, choices=choices)


def test_bad_images_are_refused(agent, agent_library, tmp_path: Path) -> None:  # noqa: F811
    with pytest.raises(ImageInputError, match="image 1: not a readable image"):
        agent.run("What is this?", images=[b"%PDF-1.7 not an image"])
    truncated = png_bytes()[:60]
    with pytest.raises(ImageInputError, match="not a readable image"):
        agent.run("What is this?", images=[truncated])
    with pytest.raises(ImageInputError, match="cannot read"):
        agent.run("What is this?", images=[tmp_path / "missing.png"])
    with pytest.raises(AgentInputError, match="at most 4 are accepted"):
        agent.run("What is this?", images=[png_bytes()] * 5)
    strict = Agent(
        agent_library.settings.model_copy(update={"agent_max_image_decoded_pixels": 10_000, "agent_max_image_bytes": 5_000}),
        agent_library.index,
    )
    # The pixel cap is checked from the header, before decoding: a decompression bomb never expands.
    with pytest.raises(ImageInputError, match="200x200 pixels exceeds the limit of 10000"):
        strict.run("What is this?", images=[png_bytes((200, 200))])
    with pytest.raises(ImageInputError, match="larger than 5000 bytes"):
        strict.run("What is this?", images=[b"\0" * 6_000])


def test_unknown_book_and_bad_thread_are_refused(agent) -> None:
    with pytest.raises(AgentInputError, match="unknown book id"):
        agent.run("What is cirrhosis?", books=["no-such-book"])
    with pytest.raises(AgentInputError, match="thread id"):
        agent.run("What is cirrhosis?", thread_id="t" * 201)


def test_contradictory_model_settings_are_refused(agent_library) -> None:  # noqa: F811
    with pytest.raises(AgentConfigError, match="vlm_model is empty"):
        Agent(agent_library.settings.model_copy(update={"vlm_base_url": "http://127.0.0.1:1/v1"}), agent_library.index)
    with pytest.raises(AgentConfigError, match="router needs an answerer"):
        Agent(agent_library.settings.model_copy(update={"router_base_url": "http://127.0.0.1:1/v1"}), agent_library.index)


# --- helpers --------------------------------------------------------------------------------------


def test_score_options_prefers_the_option_stated_next_to_the_question_words() -> None:
    page = (
        "During the first twelve hours the minute vessels in the vicinity dilate, and from them lymph exudes "
        "and leucocytes migrate into the tissues, where they gather in the clot between the divided surfaces. "
        "In from twenty-four to thirty-six hours, "
        "the capillaries of the part adjacent to the wound begin to throw out minute buds."
    )
    question = "When do the capillaries at the wound edges start sending out buds?"
    options = ["During the first 12 hours", "After about five to seven days", "After about 24 to 36 hours"]
    support = score_options(question, options, [page])
    assert support.index(max(support)) == 2
    assert sum(support) == pytest.approx(1.0)


def test_score_options_checks_each_part_of_a_compound_option() -> None:
    pages = [
        "Osteomalacia is met with in pregnant and puerperal women.",
        "Paget's disease of bone is usually seen in patients over fifty.",
    ]
    question = "In whom does osteomalacia occur, and at what age is Paget's disease seen?"
    options = ["In pregnant and puerperal women; usually in adolescence", "In pregnant and puerperal women; usually over fifty"]
    support = score_options(question, options, pages)
    assert support[1] > support[0]


def test_score_options_without_evidence_gives_equal_shares() -> None:
    assert score_options("q", ["a", "b", "c"], []) == pytest.approx([1 / 3] * 3)
    assert score_options("q", [], ["text"]) == []


def test_extract_json_tolerates_fences_and_prose() -> None:
    assert extract_json('{"a": 1}') == {"a": 1}
    assert extract_json('```json\n{"a": 1}\n```') == {"a": 1}
    assert extract_json('Sure, here: {"a": {"b": [1, 2]}} hope that helps {"c": 3}') == {"a": {"b": [1, 2]}}
    with pytest.raises(ValueError):
        extract_json("no object [1, 2]")


def test_fit_pixels_and_crop() -> None:
    image = Image.new("RGB", (1000, 500))
    assert fit_pixels(image, 1_000_000) is image
    small = fit_pixels(image, 20_000)
    assert small.width * small.height <= 20_000 and small.size == (200, 100)
    assert crop_fraction(image, [0.5, 0.0, 1.0, 0.5]).size == (500, 250)
    with pytest.raises(ValueError):
        crop_fraction(image, [0.5, 0.5, 0.5, 0.9])


# --- the command line -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("ask-cli")
    env = {
        "PATHORAG_DATA_DIR": str(root / "data"),
        "PATHORAG_PAGE_ENCODER": "none",
        "PATHORAG_OCR": "false",
        "PATHORAG_RENDER_DPI": "72",
        "COLUMNS": "250",
    }
    added = CliRunner().invoke(app, ["index", "add", str(write_pathology_book(root / "essentials.pdf"))], env=env)
    assert added.exit_code == 0, added.output
    return env


def test_ask_prints_an_evidence_only_answer(cli_env) -> None:
    result = CliRunner().invoke(app, ["ask", MCQ_QUESTION, "--choices", *MCQ_CHOICES], env=cli_env)
    assert result.exit_code == 0, result.output
    assert "evidence only" in result.stdout and "choice: A" in result.stdout
    assert f"page {HODGKIN_PAGE_LABEL} (pdf page 2)" in result.stdout
    assert "Planning (rules): 4 searches." in result.stdout


def test_ask_json(cli_env) -> None:
    result = CliRunner().invoke(app, ["ask", "What is caseous necrosis?", "--json", "--thread", "cli"], env=cli_env)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["evidence_only"] and payload["thread_id"] == "cli"
    assert payload["citations"][0]["page_label"] == "103"


def test_ask_reports_bad_input(cli_env, tmp_path: Path) -> None:
    bad = tmp_path / "scan.png"
    bad.write_text("not an image")
    result = CliRunner().invoke(app, ["ask", "What is this?", "--image", str(bad)], env=cli_env)
    assert result.exit_code == 2 and "not a readable image" in result.output
    result = CliRunner().invoke(app, ["ask", "  "], env=cli_env)
    assert result.exit_code == 2 and "the question is empty" in result.output


def test_score_options_finds_an_option_named_the_way_the_page_does_not() -> None:
    # The lexicon knows neutrophils as polymorphonuclear leucocytes; spelling (leuco/leuko) is one word.
    pages = ["The pus of an acute abscess consists chiefly of polymorphonuclear leucocytes and broken-down tissue."]
    question = "Which white cells make up most of the pus of an acute abscess?"
    options = ["Eosinophils", "Neutrophils", "Plasma cells"]
    support = score_options(question, options, pages)
    assert support.index(max(support)) == 1
    assert score_options(question, ["Eosinophils", "Polymorphonuclear leukocytes"], pages)[1] > 0.9


def test_score_options_compares_stems_not_prefixes() -> None:
    # "ulcerated" and "ulcers" share a stem; "chancroid" and "chancre" share only their first letters.
    pages = ["On the lip a hard chancre forms, which may become ulcerated and crusted."]
    question = "What is the primary lesion of the lip called, and what may it become?"
    assert score_options(question, ["A chancroid", "A hard chancre"], pages)[1] > 0.9
    assert score_options("What may the lesion become?", ["Ulcers", "Calcified"], pages)[0] > 0.9


def test_score_options_reads_each_compound_part_beside_its_own_clause() -> None:
    # Read against the whole question, "hip" (beside syphilis, bone, most often affected) would win
    # the second part; read against its own clause (gonorrhoea, joint, attacked), "knee" does.
    pages = [
        "In syphilis the tibia is the bone most often affected, and after it the hip is most often affected.",
        "In gonorrhoea the knee is the joint attacked.",
    ]
    question = "In syphilis, which bone is most often affected, and in gonorrhoea, which joint is attacked?"
    options = ["The tibia; the knee", "The tibia; the hip", "The femur; the knee"]
    support = score_options(question, options, pages)
    assert support.index(max(support)) == 0


def test_evidence_only_abstains_when_no_page_matches_closely(agent_library) -> None:  # noqa: F811
    question = "Which tax form reports capital gains from the sale of shares?"
    choices = ["Form 1040 Schedule D", "Form W-2", "Form 1099-INT"]
    strict = Agent(agent_library.settings, agent_library.index)
    result = strict.run(question, choices=choices)
    assert result.evidence_only and result.insufficient_evidence and result.choice is None
    assert "may not cover it" in result.answer and result.citations  # the closest pages stay visible
    assert set(result.option_support) == {"A", "B", "C"}
    # With both checks off, the same question gets a (meaningless) best-supported option.
    lenient_settings = agent_library.settings.model_copy(
        update={"agent_min_text_similarity": 0.0, "agent_min_vocabulary_coverage": 0.0}
    )
    guessed = Agent(lenient_settings, agent_library.index).run(question, choices=choices)
    assert not guessed.insufficient_evidence and guessed.choice in {"A", "B", "C"}


def test_vocabulary_coverage_names_the_words_no_page_uses(agent_library) -> None:  # noqa: F811
    from rag.coverage import vocabulary_coverage

    known = vocabulary_coverage(agent_library.index, "According to the textbook, do tumor cells form keratin pearls?")
    assert known.unknown == [] and known.share == 1.0  # "tumor" is known as the page's "tumour"; "textbook" frames
    gap = vocabulary_coverage(agent_library.index, "Which kinase phosphorylates the tumour cells of Hodgkin lymphoma?")
    assert gap.unknown == ["kinase", "phosphorylates"] and gap.share == pytest.approx(1 - 2 / gap.words)


def test_evidence_only_abstains_when_the_library_does_not_use_the_words(agent_library) -> None:  # noqa: F811
    # Close enough for the sentence encoder alone, but most of its words are on no page.
    settings = agent_library.settings.model_copy(update={"agent_min_text_similarity": 0.0})
    question = "Which cyclin-dependent kinase phosphorylates the retinoblastoma protein in Reed-Sternberg cells?"
    choices = ["CDK4", "ATM", "BRCA1"]
    agent = Agent(settings, agent_library.index)
    result = agent.run(question, choices=choices)
    assert result.insufficient_evidence and result.choice is None and result.citations
    assert "appear on no indexed page (cyclin, dependent, kinase, phosphorylates, retinoblastoma, protein" in result.answer
    answered = agent.run(MCQ_QUESTION, choices=MCQ_CHOICES)
    assert not answered.insufficient_evidence and answered.choice == "A"


def test_terms_are_the_same_when_many_questions_are_read_at_once() -> None:
    # The server scores several questions at once on worker threads; stemming must not mix them up.
    import snowballstemmer

    from agent import evidence

    stems = ["ulcerat", "inflammat", "granulomat", "calcificat", "suppurat", "haemorrhag", "necrotis", "fibros"]
    words = [f"{stem}{suffix}{n}" for stem in stems for suffix in ("ions", "ing", "ed") for n in range(60)]
    reference = snowballstemmer.stemmer("english")
    expected = [reference.stemWord(word) for word in words]
    for _ in range(3):
        evidence._term.cache_clear()
        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(lambda chunk: evidence.terms(" ".join(chunk)), [words] * 8))
        assert all(result == expected for result in results)


def test_exception_questions_choose_the_option_the_pages_do_not_state(agent) -> None:
    from agent.evidence import asks_for_exception, pick_option

    assert asks_for_exception("All of the following are seen in Hodgkin lymphoma EXCEPT:")
    assert asks_for_exception("Which statement about caseous necrosis is false?")
    assert not asks_for_exception("What is the false membrane of pharyngeal diphtheria composed of?")
    assert not asks_for_exception("Which wound is least likely to become infected?")  # stated as "less liable"
    assert pick_option("Which is false?", [0.5, 0.1, 0.4]).index == 1
    close = pick_option("Which cells?", [0.40, 0.38, 0.22])
    assert (close.index, close.rivals, close.exception) == (0, [1], False)

    result = agent.run(
        "All of the following describe Reed-Sternberg cells EXCEPT:",
        choices=["Owl-eye nucleoli", "Expression of CD15 and CD30", "Keratin pearls and intercellular bridges"],
    )
    assert result.choice == "C" and "asks for the exception" in result.answer
    assert min(result.option_support, key=result.option_support.get) == "C"


def test_options_supported_about_equally_are_reported_as_low_confidence(agent) -> None:
    result = agent.run("Which cells are characteristic of Hodgkin lymphoma?", choices=["Reed-Sternberg cells", "Reed-Sternberg cells."])
    assert result.choice == "A" and "low confidence" in result.answer and "B (" in result.answer

"""Query expansion across spelling and terminology change."""

from rag.terminology import SYNONYM_GROUPS, find_alternatives, spelling_alternatives


def others(text: str) -> list[str]:
    return [name for alternatives in find_alternatives(text) for name in alternatives.others]


def test_american_spellings_get_british_variants():
    found = spelling_alternatives("hemorrhage with edema in leukemia")
    assert [(a.found, a.others) for a in found] == [
        ("hemorrhage", ("haemorrhage",)),
        ("edema", ("oedema",)),
        ("leukemia", ("leukaemia",)),
    ]


def test_british_spellings_are_left_alone():
    assert spelling_alternatives("haemorrhage oedema anaemia sapraemia ischaemic") == []


def test_modern_organism_name_expands_to_historical_names():
    found = find_alternatives("Gas gangrene due to Clostridium perfringens")
    organism = next(a for a in found if a.found == "clostridium perfringens")
    assert "bacillus aerogenes capsulatus" in organism.others
    assert "clostridium perfringens" not in organism.others  # already in the query


def test_plural_and_possessive_forms_match():
    assert "boil" in others("Recurrent furuncles of the neck")
    assert "osteitis deformans" in others("Paget's disease of bone in the elderly")


def test_numbers_in_names_match_whole_words_only():
    assert "salvarsan" in others("treated with 606")
    assert "salvarsan" not in others("a wound 6066 mm long")


def test_unrelated_query_gets_no_expansion():
    assert find_alternatives("Describe the capillary loops in granulation tissue") == []


def test_every_group_names_at_least_two_forms():
    assert all(len(set(group)) >= 2 for group in SYNONYM_GROUPS)

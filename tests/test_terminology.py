"""Query expansion across spelling and terminology change."""

from rag.terminology import SYNONYM_GROUPS, expand_query, spelling_variants


def test_american_spellings_get_british_variants():
    assert spelling_variants("hemorrhage with edema in leukemia") == ["haemorrhage", "oedema", "leukaemia"]


def test_british_spellings_are_left_alone():
    assert spelling_variants("haemorrhage oedema anaemia sapraemia ischaemic") == []


def test_modern_organism_name_expands_to_historical_names():
    expansions = expand_query("Gas gangrene due to Clostridium perfringens")
    assert "bacillus aerogenes capsulatus" in expansions
    assert "clostridium perfringens" not in expansions  # already in the query


def test_plural_and_possessive_forms_match():
    assert "boil" in expand_query("Recurrent furuncles of the neck")
    assert "osteitis deformans" in expand_query("Paget's disease of bone in the elderly")


def test_numbers_in_names_match_whole_words_only():
    assert "salvarsan" in expand_query("treated with 606")
    assert "salvarsan" not in expand_query("a wound 6066 mm long")


def test_unrelated_query_gets_no_expansion():
    assert expand_query("Describe the capillary loops in granulation tissue") == []


def test_every_group_names_at_least_two_forms():
    assert all(len(set(group)) >= 2 for group in SYNONYM_GROUPS)

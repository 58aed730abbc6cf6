"""The README's configuration table names every setting, and nothing that is not one."""

import re
from pathlib import Path

from server.settings import ServerSettings

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_configuration_table_matches_settings():
    rows = set(re.findall(r"^\| `PATHORAG_([A-Z0-9_]+)` \|", README.read_text(), flags=re.MULTILINE))
    fields = {name.upper() for name in ServerSettings.model_fields}
    assert rows == fields, f"missing from README: {fields - rows}; not settings: {rows - fields}"

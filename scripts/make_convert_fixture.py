"""Fixture for `data convert`: a COCO JSON and Pascal VOC XMLs for the datasets/trees val tiles, and the YOLO
labels Ultralytics makes of them.

    python scripts/make_convert_fixture.py   # writes crates/data/tests/fixtures/convert/

The annotations come from the tiles' own labels, plus what a converter must handle: a second category on every
third box, a crowd annotation, a box of zero width, a repeated box (COCO), and objects marked difficult (VOC).
COCO labels: the package's `convert_coco(cls91to80=False)` (category ids are 1..K here, so its `id - 1` is the
category order our converter uses). VOC labels: the `convert_label` function of the package's VOC.yaml,
verbatim but for the class list (sorted object names, as ours) and the file paths.
"""

import json
import shutil
import sys
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
VAL = ROOT / "datasets/trees"
OUT = ROOT / "crates/data/tests/fixtures/convert"


def tiles():
    for img in sorted((VAL / "images/val").iterdir()):
        lab = VAL / "labels/val" / (img.stem + ".txt")
        rows = [list(map(float, l.split())) for l in lab.read_text().splitlines() if l.strip()] if lab.exists() else []
        w, h = Image.open(img).size
        yield img, w, h, rows


def make_coco(d):
    images, anns, k = [], [], 0
    for i, (img, w, h, rows) in enumerate(tiles()):
        images.append({"id": i + 1, "file_name": img.name, "width": w, "height": h})
        for j, (_, cx, cy, bw, bh) in enumerate(rows):
            k += 1
            box = [round((cx - bw / 2) * w, 2), round((cy - bh / 2) * h, 2), round(bw * w, 2), round(bh * h, 2)]
            anns.append({"id": k, "image_id": i + 1, "category_id": 2 if k % 3 == 0 else 1, "bbox": box,
                         "area": box[2] * box[3], "iscrowd": 0})
            if j == 0:
                k += 1
                anns.append(dict(anns[-1], id=k))  # repeated
            if j == 1:
                k += 1
                anns.append(dict(anns[-1], id=k, iscrowd=1))
            if j == 2:
                k += 1
                anns.append(dict(anns[-1], id=k, bbox=[box[0], box[1], 0.0, box[3]]))
    coco = {"images": images, "annotations": anns,
            "categories": [{"id": 1, "name": "Tree"}, {"id": 2, "name": "Snag"}]}
    (d / "instances_val.json").write_text(json.dumps(coco))
    return coco


def make_voc(d):
    (d / "Annotations").mkdir(parents=True)
    k = 0
    for img, w, h, rows in tiles():
        root = ET.Element("annotation")
        ET.SubElement(root, "filename").text = img.name
        size = ET.SubElement(root, "size")
        ET.SubElement(size, "width").text = str(w)
        ET.SubElement(size, "height").text = str(h)
        ET.SubElement(size, "depth").text = "3"
        for _, cx, cy, bw, bh in rows:
            k += 1
            o = ET.SubElement(root, "object")
            ET.SubElement(o, "name").text = "Snag" if k % 3 == 0 else "Tree"
            ET.SubElement(o, "difficult").text = "1" if k % 5 == 0 else "0"
            bb = ET.SubElement(o, "bndbox")
            x0, x1 = round((cx - bw / 2) * w) + 1, round((cx + bw / 2) * w)
            y0, y1 = round((cy - bh / 2) * h) + 1, round((cy + bh / 2) * h)
            for t, v in (("xmin", x0), ("ymin", y0), ("xmax", x1), ("ymax", y1)):
                ET.SubElement(bb, t).text = str(v)
        ET.ElementTree(root).write(d / "Annotations" / (img.stem + ".xml"))


# From ultralytics/cfg/datasets/VOC.yaml (8.4.190), verbatim but for `names` and the paths.
def convert_label(xml_path, lb_path, names):
    def convert_box(size, box):
        dw, dh = 1.0 / size[0], 1.0 / size[1]
        x, y, w, h = (box[0] + box[1]) / 2.0 - 1, (box[2] + box[3]) / 2.0 - 1, box[1] - box[0], box[3] - box[2]
        return x * dw, y * dh, w * dw, h * dh

    with open(xml_path) as in_file, open(lb_path, "w", encoding="utf-8") as out_file:
        tree = ET.parse(in_file)
        root = tree.getroot()
        size = root.find("size")
        w = int(size.find("width").text)
        h = int(size.find("height").text)

        for obj in root.iter("object"):
            cls = obj.find("name").text
            if cls in names and int(obj.find("difficult").text) != 1:
                xmlbox = obj.find("bndbox")
                bb = convert_box((w, h), [float(xmlbox.find(x).text) for x in ("xmin", "xmax", "ymin", "ymax")])
                cls_id = names.index(cls)  # class id
                out_file.write(" ".join(str(a) for a in (cls_id, *bb)) + "\n")


def main():
    from ultralytics.data.converter import convert_coco

    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "coco").mkdir(parents=True)
    make_coco(OUT / "coco")
    with tempfile.TemporaryDirectory() as t:
        save = Path(t) / "converted"
        convert_coco(str(OUT / "coco"), str(save), cls91to80=False)
        exp = OUT / "coco_expected"
        shutil.copytree(save / "labels" / "val", exp)
    make_voc(OUT / "voc")
    exp = OUT / "voc_expected"
    exp.mkdir()
    for x in sorted((OUT / "voc/Annotations").glob("*.xml")):
        convert_label(x, exp / (x.stem + ".txt"), ["Snag", "Tree"])
        if not (exp / (x.stem + ".txt")).read_text():
            (exp / (x.stem + ".txt")).unlink()
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()

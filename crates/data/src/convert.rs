//! Other annotation formats to a YOLO dataset (`data convert`): COCO JSON as Ultralytics' `convert_coco`
//! (boxes only; crowd annotations and boxes of zero width or height skipped; repeated rows written once;
//! numbers as `%g`) and Pascal VOC XML as Ultralytics' VOC converter (objects marked difficult skipped; VOC's
//! 1-based pixel coordinates). The images are linked (or copied) beside the labels, a data.yaml keeps the class
//! names, and every object left out is counted by reason.
//!
//! Nothing outside `--out` is written or removed: a file name from the annotations is used only when it is a
//! relative path without `..` (never joined when absolute), an image is placed through a temporary sibling and
//! a rename (never by deleting what is there: that may be the source itself), two annotations of one image
//! keep both sets of boxes, and an `--out` that already holds label files is refused rather than mixed.

use crate::error::{DataError, FileError, Result};
use crate::labels::fmt_g;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

/// What a conversion wrote and left out.
#[derive(Debug, Default)]
pub struct Report {
    pub images: usize,
    pub boxes: usize,
    pub names: Vec<String>,
    /// Objects (or images) left out, by reason.
    pub skipped: BTreeMap<String, usize>,
    /// What was done differently from what the annotations say, once per kind with a count and an example.
    pub notes: BTreeMap<String, (usize, String)>,
    pub out: PathBuf,
}

impl Report {
    fn skip(&mut self, why: &str) {
        self.skip_n(why, 1);
    }

    fn skip_n(&mut self, why: &str, n: usize) {
        *self.skipped.entry(why.to_string()).or_default() += n;
    }

    fn note(&mut self, what: &str, example: String) {
        self.notes.entry(what.to_string()).or_insert((0, example)).0 += 1;
    }

    /// Writes the label file of image `file` (none for an image without boxes, a background).
    fn write_labels(&mut self, lab_dir: &Path, file: &Path, rows: &[String]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        self.boxes += rows.len();
        let p = lab_dir.join(file.with_extension("txt"));
        crate::write_atomic(&p, (rows.join("\n") + "\n").as_bytes())
            .map_err(|e| FileError::io(&p, e))?;
        Ok(())
    }

    /// Adds `row` to an image's rows unless it is there already.
    fn push_row(&mut self, rows: &mut Vec<String>, row: String) {
        if rows.contains(&row) {
            self.skip("repeated box (written once)");
        } else {
            rows.push(row);
        }
    }

    pub fn render(&self) -> String {
        let mut s = format!(
            "wrote {} images, {} boxes, {} classes to {}\n",
            self.images,
            self.boxes,
            self.names.len(),
            self.out.display()
        );
        for (why, n) in &self.skipped {
            s += &format!("  skipped {n}: {why}\n");
        }
        for (what, (n, example)) in &self.notes {
            s += &format!("  note: {n} {what} (e.g. {example})\n");
        }
        s
    }
}

fn bad(path: &Path, msg: impl Into<String>) -> DataError {
    DataError::Io {
        path: path.display().to_string(),
        msg: msg.into(),
    }
}

/// `name` when it is a relative path of plain components (no root, drive, `.` or `..`): safe to join under a
/// folder without leaving it.
fn confined(name: &str) -> Option<&Path> {
    let p = Path::new(name);
    let plain = p
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)));
    (plain && p.components().next().is_some()).then_some(p)
}

/// Whether two paths name the same file (the same inode where the platform says).
fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
        (Ok(x), Ok(y)) if x == y => true,
        #[cfg(unix)]
        _ => {
            use std::os::unix::fs::MetadataExt;
            matches!((std::fs::metadata(a), std::fs::metadata(b)),
                (Ok(x), Ok(y)) if x.dev() == y.dev() && x.ino() == y.ino())
        }
        #[cfg(not(unix))]
        _ => false,
    }
}

/// Puts `src` at `dst`: a hard link where the file system allows, else a copy, made under a temporary name and
/// renamed over `dst`, so nothing is deleted first (`dst` may be `src` itself: then it stays as it is).
fn place(src: &Path, dst: &Path) -> Result<()> {
    if dst.exists() && same_file(src, dst) {
        return Ok(());
    }
    let tmp = dst.with_file_name(format!(
        ".{}.tmp{}",
        dst.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    if std::fs::hard_link(src, &tmp).is_err() {
        std::fs::copy(src, &tmp).map_err(|e| FileError::io(dst, e))?;
    }
    std::fs::rename(&tmp, dst).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        FileError::io(dst, e)
    })?;
    Ok(())
}

/// A label row `cls cx cy w h` (numbers written by `num`) when every number is finite and the box has a
/// positive size. Checked on the normalized values: finite corners can still sum or divide to infinity.
fn box_row(
    cls: usize,
    [cx, cy, w, h]: [f64; 4],
    num: fn(f64) -> String,
) -> std::result::Result<String, &'static str> {
    if ![cx, cy, w, h].iter().all(|v| v.is_finite()) {
        return Err("box with a coordinate that is not a finite number");
    }
    if w <= 0.0 || h <= 0.0 {
        return Err("box of zero width or height");
    }
    Ok(format!(
        "{cls} {} {} {} {}",
        num(cx),
        num(cy),
        num(w),
        num(h)
    ))
}

/// The image size the annotations give when both sides are finite and positive, else the image's own
/// (`what` says where the size was looked for); whether the image's own was used.
fn size_or_image(
    given: (Option<f64>, Option<f64>),
    src: &Path,
    what: impl FnOnce() -> String,
) -> Result<((f64, f64), bool)> {
    let usable = |v: Option<f64>| v.filter(|v| v.is_finite() && *v > 0.0);
    if let (Some(w), Some(h)) = (usable(given.0), usable(given.1)) {
        return Ok(((w, h), false));
    }
    let (w, h) = image::image_dimensions(src).map_err(|e| {
        FileError::decode(src, format!("{} and the image is unreadable", what()), e)
    })?;
    Ok(((w as f64, h as f64), true))
}

/// Refuses an output whose labels folder already holds label files: converting again would mix old and new.
fn fresh_labels(lab: &Path) -> Result<()> {
    let old = std::fs::read_dir(lab)
        .map(|d| {
            d.filter_map(|e| e.ok())
                .any(|e| e.path().extension().is_some_and(|x| x == "txt"))
        })
        .unwrap_or(false);
    if old {
        return Err(bad(
            lab,
            "already holds label files (an earlier conversion?): converting into it would mix old and new \
             labels; give another --out or remove that folder",
        ));
    }
    Ok(())
}

fn write_yaml(out: &Path, split: &str, names: &[String]) -> Result<()> {
    let mut y = format!(
        "# Converted by `data convert`; train and val name the same images until you split them.\n\
         train: images/{split}\nval: images/{split}\nnames:\n"
    );
    for (i, n) in names.iter().enumerate() {
        y += &format!("  {i}: {}\n", serde_json::to_string(n).unwrap_or_default());
    }
    let p = out.join("data.yaml");
    crate::write_atomic(&p, y.as_bytes()).map_err(|e| FileError::io(&p, e))?;
    Ok(())
}

fn dirs(out: &Path, split: &str) -> Result<(PathBuf, PathBuf)> {
    let Some(split) = confined(split).filter(|p| p.components().count() == 1) else {
        return Err(bad(
            out,
            format!("--split {split}: a plain folder name is expected"),
        ));
    };
    let (img, lab) = (
        out.join("images").join(split),
        out.join("labels").join(split),
    );
    fresh_labels(&lab)?;
    for d in [&img, &lab] {
        std::fs::create_dir_all(d).map_err(|e| FileError::io(d, e))?;
    }
    Ok((img, lab))
}

/// The label rows of the images a conversion places, by output file name, in the order first seen.
#[derive(Default)]
struct Placed {
    order: Vec<String>,
    by_name: HashMap<String, (PathBuf, Vec<String>)>,
}

impl Placed {
    /// The output name for source image `src` (wanted: `name`): the same name again for the same file (its
    /// boxes join the earlier ones), a new `stem_tag.ext` for another file with that name.
    fn name_for(&mut self, r: &mut Report, src: &Path, name: &str, tag: &str) -> String {
        match self.by_name.get(name) {
            None => {}
            Some((s, _)) if same_file(s, src) => {
                r.note(
                    "images annotated twice: their boxes are written together",
                    name.to_string(),
                );
                return name.to_string();
            }
            Some(_) => {
                let p = Path::new(name);
                let stem = p.file_stem().unwrap_or_default().to_string_lossy();
                let renamed = match p.extension() {
                    Some(e) => format!("{stem}_{tag}.{}", e.to_string_lossy()),
                    None => format!("{stem}_{tag}"),
                };
                r.note(
                    "different images with one file name: the later ones renamed",
                    format!("{} -> {renamed}", src.display()),
                );
                return self.name_for(r, src, &renamed, tag);
            }
        }
        self.order.push(name.to_string());
        self.by_name
            .insert(name.to_string(), (src.to_path_buf(), Vec::new()));
        name.to_string()
    }

    fn rows(&mut self, name: &str) -> &mut Vec<String> {
        &mut self.by_name.get_mut(name).expect("named by name_for").1
    }

    /// Places every image and writes its labels.
    fn write(self, r: &mut Report, img_dir: &Path, lab_dir: &Path) -> Result<()> {
        let Placed { order, mut by_name } = self;
        for name in order {
            let (src, rows) = by_name.remove(&name).expect("listed once");
            place(&src, &img_dir.join(&name))?;
            r.images += 1;
            r.write_labels(lab_dir, Path::new(&name), &rows)?;
        }
        Ok(())
    }
}

/// COCO JSON (`ann`) with its images under `images` to a YOLO dataset in `out` (split `split`). Classes are
/// the categories in id order (on COCO itself this is Ultralytics' 91-to-80 map; on ids 1..K it is `id - 1`).
pub fn coco(ann: &Path, images: &Path, out: &Path, split: &str) -> Result<Report> {
    let text = std::fs::read_to_string(ann).map_err(|e| FileError::io(ann, e))?;
    let j: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| FileError::decode(ann, "not JSON", e))?;
    let list = |k: &str| {
        j.get(k)
            .and_then(|v| v.as_array())
            .ok_or_else(|| bad(ann, format!("no \"{k}\" list: not a COCO annotation file")))
    };
    let mut cats: Vec<(i64, String)> = list("categories")?
        .iter()
        .filter_map(|c| Some((c.get("id")?.as_i64()?, c.get("name")?.as_str()?.to_string())))
        .collect();
    if cats.is_empty() {
        return Err(bad(
            ann,
            "\"categories\" names no class (each needs an id and a name): the dataset would have no classes",
        ));
    }
    cats.sort();
    if let Some(w) = cats.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(bad(
            ann,
            format!(
                "category id {} is given twice ({:?} and {:?})",
                w[0].0, w[0].1, w[1].1
            ),
        ));
    }
    let class_of: HashMap<i64, usize> = cats.iter().enumerate().map(|(i, c)| (c.0, i)).collect();
    let mut r = Report {
        names: cats.into_iter().map(|c| c.1).collect(),
        out: out.to_path_buf(),
        ..Default::default()
    };
    let mut anns: HashMap<i64, Vec<&serde_json::Value>> = HashMap::new();
    for a in list("annotations")? {
        match a.get("image_id").and_then(|v| v.as_i64()) {
            Some(id) => anns.entry(id).or_default().push(a),
            None => r.skip("annotation without an image_id"),
        }
    }
    let (img_dir, lab_dir) = dirs(out, split)?;
    let mut seen_ids = BTreeSet::new();
    let mut placed = Placed::default();
    for (k, img) in list("images")?.iter().enumerate() {
        let (Some(id), Some(file)) = (
            img.get("id").and_then(|v| v.as_i64()),
            img.get("file_name").and_then(|v| v.as_str()),
        ) else {
            return Err(bad(
                ann,
                format!("images[{k}]: needs an id and a file_name"),
            ));
        };
        if !seen_ids.insert(id) {
            r.skip("image entry with an id given before (its annotations go to the first)");
            continue;
        }
        let Some(rel) = confined(file) else {
            r.skip("file_name absolute or with .. (outside --images; not read)");
            continue;
        };
        let src = images.join(rel);
        if !src.is_file() {
            r.skip("image file missing (its objects too)");
            continue;
        }
        let given = |key: &str| img.get(key).and_then(|v| v.as_f64());
        let ((w, h), own) = size_or_image((given("width"), given("height")), &src, || {
            format!("images[{k}] has no usable width/height")
        })?;
        if own {
            r.note(
                "images without a positive width/height: the image's own size used",
                file.to_string(),
            );
        }
        let wanted = rel
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let name = placed.name_for(&mut r, &src, &wanted, &id.to_string());
        for a in anns.get(&id).map(Vec::as_slice).unwrap_or_default() {
            if a.get("iscrowd").and_then(|v| v.as_i64()).unwrap_or(0) != 0 {
                r.skip("crowd annotation (iscrowd)");
                continue;
            }
            let b: Vec<f64> = a
                .get("bbox")
                .and_then(|v| v.as_array())
                .map(|v| v.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default();
            if b.len() != 4 {
                r.skip("annotation without a 4-number bbox");
                continue;
            }
            let Some(&cls) = a
                .get("category_id")
                .and_then(|v| v.as_i64())
                .and_then(|c| class_of.get(&c))
            else {
                r.skip("category_id not in categories");
                continue;
            };
            let v = [
                (b[0] + b[2] / 2.0) / w,
                (b[1] + b[3] / 2.0) / h,
                b[2] / w,
                b[3] / h,
            ];
            match box_row(cls, v, fmt_g) {
                Ok(row) => r.push_row(placed.rows(&name), row),
                Err(why) => r.skip(why),
            }
        }
    }
    placed.write(&mut r, &img_dir, &lab_dir)?;
    for (id, a) in &anns {
        if !seen_ids.contains(id) {
            r.skip_n("image_id not in images", a.len());
        }
    }
    write_yaml(out, split, &r.names)?;
    Ok(r)
}

fn child<'a, 'i>(n: roxmltree::Node<'a, 'i>, tag: &str) -> Option<roxmltree::Node<'a, 'i>> {
    n.children().find(|c| c.has_tag_name(tag))
}

fn text_of(n: roxmltree::Node, tag: &str) -> Option<String> {
    child(n, tag)
        .and_then(|c| c.text())
        .map(|t| t.trim().to_string())
}

/// The image of a VOC annotation in `images`: its `<filename>` when that is a plain file name present there,
/// else (as Ultralytics, which finds images by the annotation id) `stem` with any image extension. A
/// `<filename>` with folders in it is never joined: it could name a file outside the dataset.
fn voc_image(images: &Path, named: Option<&str>, stem: &str) -> Option<String> {
    let plain = |n: &str| {
        let mut parts = Path::new(n).components();
        matches!(
            (parts.next(), parts.next()),
            (Some(std::path::Component::Normal(_)), None)
        )
    };
    if let Some(n) = named.filter(|n| plain(n) && images.join(n).is_file()) {
        return Some(n.to_string());
    }
    crate::config::IMAGE_EXTS
        .iter()
        .flat_map(|e| [e.to_string(), e.to_uppercase()])
        .map(|e| format!("{stem}.{e}"))
        .find(|f| plain(f) && images.join(f).is_file())
}

/// Pascal VOC (`dir/Annotations/*.xml`, `dir/JPEGImages/`) to a YOLO dataset in `out`. Classes are the
/// object names found, sorted.
pub fn voc(dir: &Path, out: &Path, split: &str) -> Result<Report> {
    let ann_dir = dir.join("Annotations");
    let mut xmls: Vec<PathBuf> = std::fs::read_dir(&ann_dir)
        .map_err(|e| {
            bad(
                &ann_dir,
                format!("cannot list ({e}): expected a VOC folder with Annotations/"),
            )
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("xml")))
        .collect();
    xmls.sort();
    let docs: Vec<(PathBuf, String)> = xmls
        .into_iter()
        .map(|p| {
            let t = std::fs::read_to_string(&p).map_err(|e| FileError::io(&p, e))?;
            Ok((p, t))
        })
        .collect::<Result<_>>()?;
    let mut names = BTreeSet::new();
    let mut parsed = Vec::new();
    for (p, t) in &docs {
        let doc = roxmltree::Document::parse(t).map_err(|e| FileError::decode(p, "not XML", e))?;
        for o in doc
            .root_element()
            .children()
            .filter(|c| c.has_tag_name("object"))
        {
            if let Some(n) = text_of(o, "name") {
                names.insert(n);
            }
        }
        parsed.push((p, doc));
    }
    let mut r = Report {
        names: names.into_iter().collect(),
        out: out.to_path_buf(),
        ..Default::default()
    };
    let (img_dir, lab_dir) = dirs(out, split)?;
    let mut placed = Placed::default();
    for (p, doc) in parsed {
        let root = doc.root_element();
        let stem = p
            .file_stem()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let images = dir.join("JPEGImages");
        let named = text_of(root, "filename");
        let Some(file) = voc_image(&images, named.as_deref(), &stem) else {
            r.skip("image file missing (its objects too)");
            continue;
        };
        if let Some(n) = named.filter(|n| *n != file) {
            r.note(
                "annotations name an image that is not in JPEGImages/: used the image with the annotation's stem, as Ultralytics does",
                format!("{}: {n} -> {file}", p.display()),
            );
        }
        let src = images.join(&file);
        let size = child(root, "size");
        let num = |tag: &str| {
            size.and_then(|s| text_of(s, tag))
                .and_then(|v| v.parse::<f64>().ok())
        };
        let ((w, h), _) = size_or_image((num("width"), num("height")), &src, || {
            format!("no <size> in {}", p.display())
        })?;
        let image_name = placed.name_for(&mut r, &src, &file, &stem);
        for o in root.children().filter(|c| c.has_tag_name("object")) {
            let Some(name) = text_of(o, "name") else {
                r.skip("object without a name");
                continue;
            };
            if text_of(o, "difficult").and_then(|d| d.parse::<i64>().ok()) == Some(1) {
                r.skip("difficult object");
                continue;
            }
            let Some(bb) = child(o, "bndbox") else {
                r.skip("object without a bndbox");
                continue;
            };
            let v: Vec<Option<f64>> = ["xmin", "xmax", "ymin", "ymax"]
                .iter()
                .map(|t| text_of(bb, t).and_then(|s| s.parse().ok()))
                .collect();
            let [Some(x0), Some(x1), Some(y0), Some(y1)] = v[..] else {
                r.skip("bndbox without four numbers");
                continue;
            };
            if x1 <= x0 || y1 <= y0 {
                r.skip("box with xmax <= xmin or ymax <= ymin");
                continue;
            }
            let cls = r.names.iter().position(|n| *n == name).unwrap_or(0);
            let (cx, cy) = ((x0 + x1) / 2.0 - 1.0, (y0 + y1) / 2.0 - 1.0);
            let v = [cx / w, cy / h, (x1 - x0) / w, (y1 - y0) / h];
            // Python's full-precision floats, as Ultralytics' VOC converter writes them (every object, even
            // a repeated one).
            match box_row(cls, v, |x| x.to_string()) {
                Ok(row) => placed.rows(&image_name).push(row),
                Err(why) => r.skip(why),
            }
        }
    }
    placed.write(&mut r, &img_dir, &lab_dir)?;
    write_yaml(out, split, &r.names)?;
    Ok(r)
}

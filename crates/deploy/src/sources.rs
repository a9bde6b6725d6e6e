//! What `predict --source` names, as Ultralytics reads it: an image or video file, a folder (recursive), a
//! glob, a .txt list of files, a stream URL, a `.streams` list of URLs, or a camera index. Images come first,
//! then videos, each sorted (Ultralytics' order).

use anyhow::{bail, Context, Result};
use data::config::{has_ext, list_file, walk, IMAGE_EXTS, VIDEO_EXTS};
use std::path::{Path, PathBuf};

/// One input of a prediction run.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Image(PathBuf),
    Video(PathBuf),
    /// Read as it arrives: `rtsp://`, `rtmp://`, `http(s)://`, `tcp://`, `udp://`, `file://`...
    Stream(String),
    /// `/dev/videoN`.
    Camera(u32),
}

impl Source {
    /// The file behind it, for output names; streams and cameras have none.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Source::Image(p) | Source::Video(p) => Some(p),
            _ => None,
        }
    }

    pub fn is_image(&self) -> bool {
        matches!(self, Source::Image(_))
    }

    /// The base of a stream's or camera's output names (`rtsp://host/live.sdp` -> `live`), as Ultralytics takes
    /// the URL's stem.
    pub fn stream_base(&self) -> String {
        match self {
            Source::Camera(i) => i.to_string(),
            Source::Stream(u) => {
                let last = u
                    .trim_end_matches('/')
                    .rsplit('/')
                    .next()
                    .unwrap_or("stream");
                let stem = Path::new(last)
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let clean: String = stem
                    .chars()
                    .map(|c| {
                        if c.is_alphanumeric() || c == '-' || c == '_' {
                            c
                        } else {
                            '_'
                        }
                    })
                    .collect();
                if clean.is_empty() {
                    "stream".into()
                } else {
                    clean
                }
            }
            Source::Image(p) | Source::Video(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default(),
        }
    }
}

fn is_url(s: &str) -> bool {
    s.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+' || c == '-' || c == '.')
    })
}

fn media_exts() -> Vec<&'static str> {
    IMAGE_EXTS.iter().chain(VIDEO_EXTS).copied().collect()
}

fn classify(p: PathBuf, named_by: &str) -> Result<Source> {
    if has_ext(&p, IMAGE_EXTS) {
        Ok(Source::Image(p))
    } else if has_ext(&p, VIDEO_EXTS) {
        Ok(Source::Video(p))
    } else {
        bail!(
            "{named_by}: {} is not an image ({}) or a video ({})",
            p.display(),
            IMAGE_EXTS.join(", "),
            VIDEO_EXTS.join(", ")
        )
    }
}

/// A `.streams` file: one URL or camera index a line.
fn stream_list(p: &Path) -> Result<Vec<Source>> {
    let text =
        std::fs::read_to_string(p).with_context(|| format!("{}: cannot read", p.display()))?;
    text.lines()
        .map(str::trim)
        .enumerate()
        .filter(|(_, l)| !l.is_empty() && !l.starts_with('#'))
        .map(|(i, l)| match l.parse::<u32>() {
            Ok(n) => Ok(Source::Camera(n)),
            Err(_) if is_url(l) => Ok(Source::Stream(l.to_string())),
            Err(_) => bail!(
                "{}:{}: expected a stream URL or a camera index, got {l:?}",
                p.display(),
                i + 1
            ),
        })
        .collect()
}

/// The inputs `source` names.
pub fn collect_sources(source: &str) -> Result<Vec<Source>> {
    let p = Path::new(source);
    let mut files: Vec<PathBuf> = Vec::new();
    if is_url(source) {
        return Ok(vec![Source::Stream(source.to_string())]);
    } else if !p.exists() && !source.is_empty() && source.chars().all(|c| c.is_ascii_digit()) {
        let n = source
            .parse()
            .with_context(|| format!("--source {source}: not a camera index"))?;
        return Ok(vec![Source::Camera(n)]);
    } else if p.is_dir() {
        walk(p, &media_exts(), &mut files, &mut Default::default())
            .with_context(|| format!("--source {source}: cannot read the folder"))?;
    } else if p.is_file() && has_ext(p, &["streams"]) {
        return stream_list(p);
    } else if p.is_file() && has_ext(p, &["txt"]) {
        files = list_file(p).with_context(|| format!("{source}: cannot read"))?;
    } else if p.is_file() {
        files.push(p.to_path_buf());
    } else if source.contains(['*', '?', '[']) {
        let exts = media_exts();
        files = glob::glob(source)
            .with_context(|| format!("--source {source}: not a valid glob"))?
            .filter_map(|e| e.ok())
            .filter(|p| p.is_file() && has_ext(p, &exts))
            .collect();
    } else {
        bail!("--source {source}: no such file, folder, glob, .txt list, URL or camera index");
    }
    files.sort();
    files.dedup();
    let mut out = files
        .into_iter()
        .map(|f| classify(f, &format!("--source {source}")))
        .collect::<Result<Vec<_>>>()?;
    // Images first, then videos: sort is stable, so each group stays sorted.
    out.sort_by_key(|s| !s.is_image());
    if out.is_empty() {
        bail!("--source {source}: no images or videos found");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_of_source() {
        let dir = std::env::temp_dir().join(format!("yolo-sources-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        for f in ["b.jpg", "sub/a.MP4", "a.png", "notes.md", "clip.avi"] {
            std::fs::write(dir.join(f), b"x").unwrap();
        }
        let got = collect_sources(dir.to_str().unwrap()).unwrap();
        assert_eq!(
            got,
            vec![
                Source::Image(dir.join("a.png")),
                Source::Image(dir.join("b.jpg")),
                Source::Video(dir.join("clip.avi")),
                Source::Video(dir.join("sub/a.MP4")),
            ]
        );
        std::fs::write(dir.join("list.txt"), "b.jpg\nnotes.md\n").unwrap();
        let e = collect_sources(dir.join("list.txt").to_str().unwrap()).unwrap_err();
        assert!(
            format!("{e:#}").contains("notes.md is not an image"),
            "{e:#}"
        );
        std::fs::write(dir.join("x.streams"), "rtsp://h/live.sdp\n2\n\nnope\n").unwrap();
        let e = collect_sources(dir.join("x.streams").to_str().unwrap()).unwrap_err();
        assert!(format!("{e:#}").contains("x.streams:4:"), "{e:#}");
        assert_eq!(
            collect_sources("rtsp://host:554/cam/live.sdp").unwrap(),
            vec![Source::Stream("rtsp://host:554/cam/live.sdp".into())]
        );
        assert_eq!(
            Source::Stream("rtsp://h/cam/live.sdp".into()).stream_base(),
            "live"
        );
        assert_eq!(collect_sources("3").unwrap(), vec![Source::Camera(3)]);
        std::fs::remove_dir_all(&dir).ok();
    }
}

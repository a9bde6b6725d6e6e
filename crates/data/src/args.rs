//! The command-line values every binary shares, typed and range-checked where they are typed (`--batch 0`,
//! `--imgsz 0` are refused before anything loads) instead of reaching a worker thread.

use std::fmt;
use std::str::FromStr;

/// The largest stride of the shipped models (P5): image sizes are multiples of it.
pub const MAX_STRIDE: usize = 32;

/// A whole number of at least 1 (`--batch`, `--epochs`, `--iters`, ...).
pub fn at_least_one(s: &str) -> Result<usize, String> {
    let n: usize = s
        .trim()
        .parse()
        .map_err(|_| format!("'{s}' is not a whole number"))?;
    if n == 0 {
        return Err("must be at least 1".into());
    }
    Ok(n)
}

/// A threshold such as `--conf` or `--iou`: a number in [0, 1] (NaN, negatives and values above 1 would
/// silently keep every box or none).
pub fn unit_interval(s: &str) -> Result<f32, String> {
    match s.trim().parse::<f32>() {
        Ok(v) if (0.0..=1.0).contains(&v) => Ok(v),
        Ok(v) => Err(format!("{v} is outside [0, 1]")),
        Err(_) => Err(format!("'{s}' is not a number (expected one in [0, 1])")),
    }
}

/// The smallest `--tile`: a tile of fewer pixels is below any model's largest stride.
pub const MIN_TILE: usize = 32;

/// `--tile N`: a whole number of pixels, at least [`MIN_TILE`].
pub fn tile_size(s: &str) -> Result<usize, String> {
    let n = at_least_one(s)?;
    if n < MIN_TILE {
        return Err(format!("{n} pixels: a tile must be at least {MIN_TILE}"));
    }
    Ok(n)
}

/// An image size: a multiple of the models' largest stride (32), at least 32 and at most 8192.
pub fn image_size(s: &str) -> Result<usize, String> {
    check_image_size(at_least_one(s)?)
}

/// [`image_size`] for a number that did not come as text (a `--hyp` file, a resumed run).
pub fn check_image_size(n: usize) -> Result<usize, String> {
    if n == 0 {
        return Err("must be at least 1".into());
    }
    if !n.is_multiple_of(MAX_STRIDE) || n > 8192 {
        return Err(format!(
            "must be a multiple of {MAX_STRIDE} between {MAX_STRIDE} and 8192 (the model's largest stride)"
        ));
    }
    Ok(n)
}

/// `--imgsz`: one side (a square) or `H,W` (also written `[H, W]` or `HxW`), each a multiple of the models'
/// largest stride; a model with a larger stride (P6: 64) checks it again once its YAML is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImgSize {
    pub h: usize,
    pub w: usize,
}

impl ImgSize {
    pub const fn square(n: usize) -> ImgSize {
        ImgSize { h: n, w: n }
    }

    /// The one side of a command that works on squares (train, val): Ultralytics takes the larger side of an
    /// `H,W` there, and so do we, saying so.
    pub fn side(self, command: &str) -> usize {
        if self.h != self.w {
            eprintln!(
                "note: {command} takes one image size; imgsz {self} -> {} (the larger side, as Ultralytics)",
                self.h.max(self.w)
            );
        }
        self.h.max(self.w)
    }
}

impl FromStr for ImgSize {
    type Err = String;

    fn from_str(s: &str) -> Result<ImgSize, String> {
        let inner = s.trim().trim_start_matches('[').trim_end_matches(']');
        let parts: Vec<&str> = inner.split([',', 'x']).collect();
        let side = |p: &str| image_size(p).map_err(|e| format!("'{s}': {e}"));
        match parts.as_slice() {
            [n] => side(n).map(ImgSize::square),
            [h, w] => Ok(ImgSize {
                h: side(h)?,
                w: side(w)?,
            }),
            _ => Err(format!(
                "'{s}': expected one size (640) or height,width (384,640)"
            )),
        }
    }
}

impl fmt::Display for ImgSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.h == self.w {
            write!(f, "{}", self.h)
        } else {
            write!(f, "{},{}", self.h, self.w)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_zero_and_odd_sizes() {
        assert!(at_least_one("0").is_err());
        assert!(at_least_one("-3").is_err());
        assert_eq!(at_least_one("8"), Ok(8));
        assert!(image_size("0").is_err());
        assert!(image_size("100").is_err());
        assert!(image_size("16384").is_err());
        assert_eq!(image_size("640"), Ok(640));
    }

    #[test]
    fn image_size_forms() {
        let hw = |h, w| Ok(ImgSize { h, w });
        assert_eq!("640".parse(), Ok(ImgSize::square(640)));
        for s in ["384,640", "384, 640", "[384, 640]", "384x640"] {
            assert_eq!(s.parse(), hw(384, 640), "{s}");
        }
        for bad in ["0", "100", "384,", "1,2,3", "a", "384,100", ""] {
            assert!(bad.parse::<ImgSize>().is_err(), "{bad}");
        }
        assert_eq!(ImgSize { h: 384, w: 640 }.to_string(), "384,640");
        assert_eq!(ImgSize { h: 384, w: 640 }.side("val"), 640);
    }
}

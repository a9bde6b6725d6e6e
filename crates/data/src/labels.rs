//! YOLO label files (`cls cx cy w h`, normalized; rows of polygon points are reduced to their box), validated
//! the way Ultralytics does, with every problem of a file reported in one note instead of stopping the run.

use crate::error::{DataError, Result};

/// One box: class id and normalized centre x, centre y, width, height.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Label {
    pub cls: usize,
    pub cx: f32,
    pub cy: f32,
    pub w: f32,
    pub h: f32,
}

/// Values (cx, cy, w, h or points) further than this outside [0, 1] are taken as wrong, not as rounding.
const OUT_TOL: f32 = 0.01;

#[derive(Debug, Default)]
pub struct Parsed {
    pub labels: Vec<Label>,
    /// Problems found, already phrased for the user (line numbers 1-based).
    pub notes: Vec<String>,
}

/// Lines as Python's `str.splitlines` cuts them (Ultralytics reads labels with it): `\n`, `\r\n` and a lone
/// `\r` (old Mac files) all end a line, as do the other separators Python knows.
pub fn splitlines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let is_sep = |c: char| {
            matches!(
                c,
                '\n' | '\r'
                    | '\x0b'
                    | '\x0c'
                    | '\x1c'
                    | '\x1d'
                    | '\x1e'
                    | '\u{85}'
                    | '\u{2028}'
                    | '\u{2029}'
            )
        };
        match rest.char_indices().find(|&(_, c)| is_sep(c)) {
            None => {
                let line = rest;
                rest = "";
                Some(line)
            }
            Some((i, c)) => {
                let line = &rest[..i];
                let mut next = i + c.len_utf8();
                if c == '\r' && rest[next..].starts_with('\n') {
                    next += 1;
                }
                rest = &rest[next..];
                Some(line)
            }
        }
    })
}

/// Parses a label file's text. Bad rows are dropped with a note; a class id >= `nc` is an error, since it
/// means the dataset YAML does not describe these labels.
pub fn parse_labels(text: &str, file: &str, nc: usize) -> Result<Parsed> {
    let mut out = Parsed::default();
    let mut clipped = 0;
    let mut seen: Vec<[u32; 5]> = Vec::new();
    let mut dups = 0;
    for (i, line) in splitlines(text).enumerate() {
        let ln = i + 1;
        let toks: Vec<&str> = line.split_whitespace().collect();
        if toks.is_empty() {
            continue;
        }
        let n = toks.len();
        if !(n == 5 || (n >= 7 && (n - 1).is_multiple_of(2))) {
            out.notes.push(format!(
                "line {ln}: {n} columns (expected 5: class cx cy w h, or a class and polygon points); row dropped"
            ));
            continue;
        }
        let vals: std::result::Result<Vec<f32>, _> =
            toks.iter().map(|t| t.parse::<f32>()).collect();
        let Ok(vals) = vals.map_err(|_| ()).and_then(|v| {
            if v.iter().all(|x| x.is_finite()) {
                Ok(v)
            } else {
                Err(())
            }
        }) else {
            out.notes
                .push(format!("line {ln}: non-numeric value; row dropped"));
            continue;
        };
        let c = vals[0];
        if c < 0.0 || c.fract() != 0.0 {
            out.notes.push(format!(
                "line {ln}: class '{}' is not a non-negative integer; row dropped",
                toks[0]
            ));
            continue;
        }
        let cls = c as usize;
        if cls >= nc {
            return Err(DataError::Label {
                file: file.to_string(),
                line: ln,
                msg: format!(
                    "class id {cls}, but the dataset YAML names {nc} classes (0..{})",
                    nc - 1
                ),
            });
        }
        let coords = &vals[1..];
        if coords
            .iter()
            .any(|v| !(-OUT_TOL..=1.0 + OUT_TOL).contains(v))
        {
            out.notes.push(format!(
                "line {ln}: coordinates far outside [0, 1] (not normalized?); row dropped"
            ));
            continue;
        }
        let (mut x1, mut y1, mut x2, mut y2) = if n == 5 {
            let (cx, cy, w, h) = (coords[0], coords[1], coords[2], coords[3]);
            (cx - w / 2.0, cy - h / 2.0, cx + w / 2.0, cy + h / 2.0)
        } else {
            let xs = coords.iter().step_by(2);
            let ys = coords.iter().skip(1).step_by(2);
            (
                xs.clone().fold(f32::INFINITY, |m, &v| m.min(v)),
                ys.clone().fold(f32::INFINITY, |m, &v| m.min(v)),
                xs.fold(f32::NEG_INFINITY, |m, &v| m.max(v)),
                ys.fold(f32::NEG_INFINITY, |m, &v| m.max(v)),
            )
        };
        let before = [x1, y1, x2, y2];
        x1 = x1.clamp(0.0, 1.0);
        y1 = y1.clamp(0.0, 1.0);
        x2 = x2.clamp(0.0, 1.0);
        y2 = y2.clamp(0.0, 1.0);
        if before
            .iter()
            .zip([x1, y1, x2, y2])
            .any(|(a, b)| (a - b).abs() > 1e-6)
        {
            clipped += 1;
        }
        if x2 - x1 <= 0.0 || y2 - y1 <= 0.0 {
            out.notes
                .push(format!("line {ln}: zero-size box; row dropped"));
            continue;
        }
        let l = Label {
            cls,
            cx: (x1 + x2) / 2.0,
            cy: (y1 + y2) / 2.0,
            w: x2 - x1,
            h: y2 - y1,
        };
        let key = [
            cls as u32,
            l.cx.to_bits(),
            l.cy.to_bits(),
            l.w.to_bits(),
            l.h.to_bits(),
        ];
        if seen.contains(&key) {
            dups += 1;
            continue;
        }
        seen.push(key);
        out.labels.push(l);
    }
    if clipped > 0 {
        out.notes.push(format!(
            "{clipped} box(es) slightly outside the image, clipped"
        ));
    }
    if dups > 0 {
        out.notes.push(format!("{dups} duplicate row(s) removed"));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_like_ultralytics() {
        let text = "0 0.5 0.5 0.2 0.2\n0 0.5 0.5 0.2 0.2\n1 0.1 0.1\n1 a 0.5 0.1 0.1\n\
                    1 0.99 0.5 0.04 0.1\n1 5.0 0.5 0.1 0.1\n0 0.5 0.5 0.0 0.1\n\
                    1 0.1 0.1 0.3 0.1 0.3 0.4 0.1 0.4\n-1 0.5 0.5 0.1 0.1\n";
        let p = parse_labels(text, "a.txt", 2).unwrap();
        assert_eq!(p.labels.len(), 3, "{p:?}");
        let poly = p.labels[2];
        assert_eq!(poly.cls, 1);
        assert!((poly.cx - 0.2).abs() < 1e-6 && (poly.h - 0.3).abs() < 1e-6);
        let clipped = p.labels[1];
        assert!(
            (clipped.cx + clipped.w / 2.0 - 1.0).abs() < 1e-6,
            "{clipped:?}"
        );
        let all = p.notes.join("\n");
        for want in [
            "line 3: 3 columns",
            "line 4: non-numeric",
            "line 6: coordinates far outside",
            "line 7: zero-size",
            "line 9: class '-1'",
            "1 box(es) slightly outside",
            "1 duplicate row(s) removed",
        ] {
            assert!(all.contains(want), "missing '{want}' in:\n{all}");
        }
    }

    #[test]
    fn class_beyond_nc_is_an_error_naming_file_and_line() {
        let e = parse_labels(
            "0 0.5 0.5 0.1 0.1\n3 0.5 0.5 0.1 0.1\n",
            "x/labels/a.txt",
            2,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "x/labels/a.txt, line 2: class id 3, but the dataset YAML names 2 classes (0..1)"
        );
    }
}

/// C's and Python's `%g` (label files): 6 significant digits, trailing zeros removed, exponent form below 1e-4 or from 1e6.
pub fn fmt_g(v: f64) -> String {
    if v == 0.0 {
        return "0".into();
    }
    let exp = v.abs().log10().floor() as i32;
    let e = format!("{v:.5e}");
    let (mant, ex) = e.split_once('e').unwrap_or((&e, "0"));
    let ex: i32 = ex.parse().unwrap_or(exp);
    if !(-4..6).contains(&ex) {
        let mant = trim(mant);
        return format!("{mant}e{}{:02}", if ex < 0 { '-' } else { '+' }, ex.abs());
    }
    let decimals = (5 - ex).max(0) as usize;
    trim(&format!("{v:.decimals$}")).to_string()
}

fn trim(s: &str) -> &str {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        s
    }
}

#[cfg(test)]
mod fmt_g_tests {
    use super::fmt_g;

    #[test]
    fn percent_g() {
        for (v, s) in [
            (0.5, "0.5"),
            (0.123456789, "0.123457"),
            (1.0, "1"),
            (123456.0, "123456"),
            (1234567.0, "1.23457e+06"),
            (0.0001, "0.0001"),
            (0.00001234, "1.234e-05"),
            (0.999999999, "1"),
            (0.000012345, "1.2345e-05"),
            (0.0, "0"),
        ] {
            assert_eq!(fmt_g(v), s, "{v}");
        }
    }
}

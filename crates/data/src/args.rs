//! Value parsers for the command-line flags every binary shares, so a bad value is refused where it is
//! typed (`--batch 0`, `--imgsz 0`) instead of reaching a worker thread.

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
}

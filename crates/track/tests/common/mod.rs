//! The pan clip's frames, cut from the grey tile the fixtures store (tests/fixtures/pan_grey.png, written by
//! scripts/make_gmc_fixture.py after checking that the clip OpenCV decodes holds these windows).

use serde_json::Value;
use std::path::Path;

pub const W: usize = 192;
pub const H: usize = 128;

/// The frame at each window corner, as RGB with equal channels (its grey is the tile's grey).
pub fn pan_frames(window: &Value) -> Vec<Vec<u8>> {
    let tile =
        image::open(Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/pan_grey.png"))
            .expect("tests/fixtures/pan_grey.png")
            .to_luma8();
    window
        .as_array()
        .expect("window corners")
        .iter()
        .map(|p| {
            let (x0, y0) = (p[0].as_u64().unwrap() as u32, p[1].as_u64().unwrap() as u32);
            let mut rgb = Vec::with_capacity(W * H * 3);
            for y in 0..H as u32 {
                for x in 0..W as u32 {
                    let g = tile.get_pixel(x0 + x, y0 + y)[0];
                    rgb.extend([g, g, g]);
                }
            }
            rgb
        })
        .collect()
}

//! Milliseconds per frame of our camera-motion compensation, on frames cut from the pan's grey tile scaled up
//! `SCALE` times, the window moving one tile pixel per frame (default: 1920x1080, scale 5).
//! `scripts/gmc_speed.py` runs this next to Ultralytics' GMC on the same frames and prints the table in
//! docs/tracking.md.
//!
//!     cargo run --release -p track --example gmc_speed -- FRAMES [W H SCALE]

use std::time::Instant;
use track::gmc::{Frame, Gmc};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("FRAMES [W H SCALE]: whole numbers"))
        .collect();
    let (n, w, h, scale) = match args[..] {
        [n] => (n, 1920, 1080, 5),
        [n, w, h, s] => (n, w, h, s),
        _ => (30, 1920, 1080, 5),
    };
    let tile = image::open(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/pan_grey.png"
    ))
    .expect("tests/fixtures/pan_grey.png")
    .to_luma8();
    let (tw, th) = (tile.width() as usize, tile.height() as usize);
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut rgb = Vec::with_capacity(w * h * 3);
            for y in 0..h {
                for x in 0..w {
                    let g =
                        tile.get_pixel(((x / scale + i) % tw) as u32, ((y / scale) % th) as u32)[0];
                    rgb.extend([g, g, g]);
                }
            }
            rgb
        })
        .collect();
    let mut gmc = Gmc::default();
    let mut times = Vec::with_capacity(n);
    let mut shift = 0.0;
    for rgb in &frames {
        let t = Instant::now();
        let warp = gmc.apply(Frame {
            width: w,
            height: h,
            rgb,
        });
        times.push(t.elapsed().as_secs_f64() * 1e3);
        shift += warp[0][2];
    }
    // The first frame only finds corners.
    let mut rest = times[1..].to_vec();
    rest.sort_by(f64::total_cmp);
    println!(
        "frames {n} median_ms {:.3} mean_dx {:.3}",
        rest[rest.len() / 2],
        shift / (n - 1) as f64
    );
}
